package events

import (
	"fmt"
	"net/http"

	"github.com/distribution/distribution/v3/notifications"
	"github.com/opencontainers/go-digest"

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
}

func (r *Receiver) registry(w http.ResponseWriter, req *http.Request) {
	outcomes, err := r.decodeRegistry(w, req)
	if err != nil {
		r.metrics.EventsReceived.WithLabelValues("registry", "unknown", "rejected").Inc()
		status := fail(w, err)
		r.log.Warn("registry notification rejected", "status", status, "error", err, "remote", req.RemoteAddr)
		return
	}
	var sum Summary
	for _, o := range outcomes {
		if o.push == nil {
			sum.Ignored++
			outcome := "ignored"
			if o.invalid != "" {
				outcome = "invalid"
				r.log.Warn("registry push ignored: invalid revision", "why", o.invalid, "remote", req.RemoteAddr)
			}
			r.metrics.EventsReceived.WithLabelValues("registry", o.action, outcome).Inc()
			continue
		}
		dup, err := r.pub.Publish(req.Context(), types.SubjectRegistryPush, o.push.ID, o.push)
		if err != nil {
			// Events published before this one are durable and de-duplicated when the
			// registry retries the whole body.
			r.log.Error("storing registry event failed", "event_id", o.push.ID, "error", err)
			fail(w, err)
			return
		}
		outcome := "kept"
		if dup {
			outcome = "duplicate"
			sum.Duplicates++
		} else {
			sum.Accepted++
		}
		r.metrics.EventsReceived.WithLabelValues("registry", o.action, outcome).Inc()
		r.log.Info("registry push", "outcome", outcome, "pipeline", o.push.Pipeline, "revision", o.push.Revision,
			"platform", o.push.Platform.String(), "tag", o.push.Tag, "digest", o.push.Digest)
	}
	writeJSON(w, http.StatusOK, sum)
}

// decodeRegistry authenticates and decodes the whole body and classifies every event; it
// fails on the first problem so that nothing of a bad body is kept.
func (r *Receiver) decodeRegistry(w http.ResponseWriter, req *http.Request) ([]registryOutcome, error) {
	if !r.secrets.InsecureNoAuth || r.secrets.RegistryToken != "" {
		if r.secrets.RegistryToken == "" {
			return nil, reject(http.StatusUnauthorized, "registry notifications are disabled: set auth.registryToken")
		}
		if err := checkBearer(req, r.secrets.RegistryToken, "auth.registryToken"); err != nil {
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
	o := registryOutcome{action: actionLabel(e.Action)}
	if e.Action != notifications.EventActionPush || !contains(manifestMediaTypes, e.Target.MediaType) || e.Target.Tag == "" {
		return o, nil // pulls, mounts, deletes, blob pushes and pushes by digest
	}
	if signatureTag.MatchString(e.Target.Tag) {
		return o, nil // signatures and referrers, including the ones promoter pushes itself
	}
	p, ok := r.stagingFor(e.Target.Repository, e.Request.Host)
	if !ok {
		return o, nil
	}
	if p.cache.TagIn(p.staging, e.Target.Tag, p.platforms) {
		return o, nil // BuildKit exporting the build cache
	}
	rev, platform, ok := p.archTags.Match(e.Target.Tag)
	if !ok {
		return o, nil // the merged index itself, or a tag that is not an arch tag
	}
	if err := types.ValidateRevision(rev); err != nil {
		// Sources reject such a revision, so no build makes this tag: never merge it.
		o.invalid = fmt.Sprintf("arch tag %s:%s: %v", e.Target.Repository, e.Target.Tag, err)
		return o, nil
	}
	if e.ID == "" {
		return o, reject(http.StatusBadRequest, "push of %s:%s has no event id", e.Target.Repository, e.Target.Tag)
	}
	if err := digest.Digest(e.Target.Digest).Validate(); err != nil {
		return o, reject(http.StatusBadRequest, "push of %s:%s: digest %q: %v", e.Target.Repository, e.Target.Tag, e.Target.Digest, err)
	}
	o.push = &types.RegistryPush{
		ID: e.ID, Pipeline: p.name, Revision: rev, Platform: platform,
		Tag: e.Target.Tag, Digest: e.Target.Digest.String(), MediaType: e.Target.MediaType,
		Timestamp: e.Timestamp.UTC(),
	}
	return o, nil
}

// actionLabel bounds the metric label to the actions the registry defines.
func actionLabel(a string) string {
	switch a {
	case notifications.EventActionPush, notifications.EventActionPull, notifications.EventActionMount, notifications.EventActionDelete:
		return a
	}
	return "other"
}
