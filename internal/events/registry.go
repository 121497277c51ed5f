package events

import (
	"net/http"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/promoter-dev/promoter/internal/types"
)

// Media types the registry receiver accepts.
const (
	// EnvelopeMediaType is distribution's notifications.EventsMediaType.
	EnvelopeMediaType = "application/vnd.docker.distribution.events.v2+json"
	jsonMediaType     = "application/json"
)

// The actions of distribution's notifications (notifications.EventAction*).
const (
	actionPull   = "pull"
	actionPush   = "push"
	actionMount  = "mount"
	actionDelete = "delete"
)

// manifestMediaTypes are the pushes that can be a per-platform image; everything else (blob
// pushes arrive as application/octet-stream) is acknowledged and ignored.
var manifestMediaTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

// envelope is distribution's notifications.Envelope with the concrete event type (the
// library's holds go-events interfaces, which do not decode).
//
// The envelope and event are declared here rather than imported: distribution's
// notifications package brings about 250 packages (its registry, storage drivers, redis,
// OpenTelemetry) into every binary that receives a webhook, for these two structs.
// TestEnvelopeDecodesAsDistribution holds them to the library's, field by field.
type envelope struct {
	Events []event `json:"events"`
}

// event is distribution's notifications.Event (v3.1), with the same JSON names and types,
// so a body decodes (and fails to decode) here exactly as it does there.
type event struct {
	ID        string    `json:"id,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action,omitempty"`
	Target    struct {
		ocispec.Descriptor
		Length         int64                `json:"length,omitempty"`
		Repository     string               `json:"repository,omitempty"`
		FromRepository string               `json:"fromRepository,omitempty"`
		URL            string               `json:"url,omitempty"`
		Tag            string               `json:"tag,omitempty"`
		References     []ocispec.Descriptor `json:"references,omitempty"`
	} `json:"target"`
	Request struct {
		ID        string `json:"id"`
		Addr      string `json:"addr,omitempty"`
		Host      string `json:"host,omitempty"`
		Method    string `json:"method"`
		UserAgent string `json:"useragent"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name,omitempty"`
	} `json:"actor"`
	Source struct {
		Addr       string `json:"addr,omitempty"`
		InstanceID string `json:"instanceID,omitempty"`
	} `json:"source"`
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

func (r *Receiver) classifyEvent(e event) (registryOutcome, error) {
	if e.Action != actionPush {
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
	case actionPush, actionPull, actionMount, actionDelete:
		return a
	}
	return "other"
}
