package events

import (
	"net/http"

	"github.com/distribution/distribution/v3/notifications"

	"github.com/promoter-dev/promoter/internal/types"
)

// Media types the registry receiver accepts.
const (
	EnvelopeMediaType = notifications.EventsMediaType
	jsonMediaType     = "application/json"
)

// manifestMediaTypes are the pushes that can be a per-platform image; everything else (blob
// pushes arrive as application/octet-stream) is acknowledged and ignored.
var manifestMediaTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// envelope is notifications.Envelope with the concrete event type (the library's holds
// go-events interfaces, which do not decode).
type envelope struct {
	Events []notifications.Event `json:"events"`
}

// registryOutcome is how one event of an envelope is handled.
type registryOutcome struct {
	action  string
	push    *types.RegistryPush // nil: ignored
	invalid string              // why an arch tag push was ignored as invalid
	// reason is why an event was not kept (one of the reason* constants); "" for a kept one.
	reason string
	// repo and tag are what an ignored push named, for its log line; "" when unknown.
	repo, tag string
}

// ignored is the outcome of an event that is acknowledged and not kept.
func ignored(action, reason string) registryOutcome {
	return registryOutcome{action: action, reason: reason}
}

// decodeRegistry authenticates and decodes the whole body and classifies every event; it
// fails on the first problem so that nothing of a bad body is kept.
func (r *Receiver) decodeRegistry(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if !r.insecureNoAuth || r.secrets["registry"] != "" {
		if r.secrets["registry"] == "" {
			return nil, reject(http.StatusUnauthorized, "registry notifications are disabled: set auth.registryToken")
		}
		if err := checkBearer(req, r.secrets["registry"], "auth.registryToken"); err != nil {
			return nil, err
		}
	}
	body, err := readBody(w, req, r.maxBody, EnvelopeMediaType, jsonMediaType)
	if err != nil {
		return nil, err
	}
	return r.classifyRegistry(body)
}

// classifyRegistry decodes an envelope and decides, for each event, whether it is kept.
func (r *Receiver) classifyRegistry(body []byte) ([]registryOutcome, error) {
	var env envelope
	if err := decodeJSON(body, &env, false); err != nil {
		return nil, reject(http.StatusBadRequest, "decoding notification envelope: %v", err)
	}
	if env.Events == nil {
		return nil, reject(http.StatusBadRequest, `decoding notification envelope: no "events" array`)
	}
	out := make([]registryOutcome, 0, len(env.Events))
	for i, e := range env.Events {
		o, err := r.classifyEvent(e)
		if err != nil {
			return nil, reject(http.StatusBadRequest, "events[%d]: %v", i, err)
		}
		out = append(out, o)
	}
	return out, nil
}

func (r *Receiver) classifyEvent(e notifications.Event) (registryOutcome, error) {
	if e.Action != notifications.EventActionPush {
		return ignored(actionLabel(e.Action), notPushReason(actionLabel(e.Action))), nil // pulls, mounts, deletes
	}
	mt := e.Target.MediaType
	if mt == "" {
		mt = "application/octet-stream" // distribution always names it; none is no manifest
	}
	o, err := r.classifyPush("registry", imagePush{
		id: e.ID, host: hostField(e.Request.Host), repo: e.Target.Repository, tag: e.Target.Tag,
		digest: e.Target.Digest.String(), mediaType: mt, at: e.Timestamp,
	})
	// distribution names the id and the digest of every push: one without is not its event.
	switch {
	case err != nil || o.push == nil:
	case e.ID == "":
		return o, reject(http.StatusBadRequest, "push of %s:%s has no event id", e.Target.Repository, e.Target.Tag)
	case o.push.Digest == "":
		return o, reject(http.StatusBadRequest, "push of %s:%s: digest \"\": missing", e.Target.Repository, e.Target.Tag)
	}
	return o, err
}

// notPushReason is the reason of an event that is no push: an action (label) promoter does
// not know ("other") is unknown_type, a known one not_a_push.
func notPushReason(action string) string {
	if action == "other" {
		return reasonUnknownType
	}
	return reasonNotAPush
}

// actionLabel bounds the metric label to the actions the registry defines.
func actionLabel(a string) string {
	switch a {
	case notifications.EventActionPush, notifications.EventActionPull, notifications.EventActionMount, notifications.EventActionDelete:
		return a
	}
	return "other"
}
