package events

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// imagePush is one manifest push as any registry reports it, before it is matched to a
// pipeline. Every registry receiver (distribution, Harbor, CloudEvents, ...) decodes its
// payload into these, and classifyPush applies the one set of rules to all of them.
type imagePush struct {
	// id is the registry's event id; "" derives one from the push (derivedID), for
	// payloads that carry none.
	id string
	// host is the registry host the push went to; "" when the payload names none, and
	// then the repository path alone finds the pipeline.
	host string
	// repo is the repository path, "team/app".
	repo string
	// tag is "" for a push by digest: no arch tag, so nothing to merge (the reconciler
	// lists tags in any case).
	tag string
	// digest is "" when the payload names none: the merger reads what the tag points at
	// from the registry, as it does for every push.
	digest string
	// mediaType is "" when the payload names none.
	mediaType string
	at        time.Time
}

// classifyPush decides whether a push is kept: it must be a manifest (when the media type
// is known), under an arch tag of a pipeline's staging repository, with a valid revision.
func (r *Receiver) classifyPush(source string, p imagePush) (registryOutcome, error) {
	o := registryOutcome{action: "push", repo: p.repo, tag: p.tag}
	ignore := func(reason string) (registryOutcome, error) { o.reason = reason; return o, nil }
	if p.mediaType != "" && !contains(manifestMediaTypes, p.mediaType) {
		return ignore(reasonNotAManifest) // blob pushes
	}
	if p.tag == "" {
		return ignore(reasonNoTag) // pushes by digest
	}
	if registry.IsAccessoryTag(p.tag) {
		return ignore(reasonSignatureTag) // signatures and referrers, including the ones promoter pushes itself
	}
	pl, reason := r.stagingFor(p.repo, p.host)
	if reason != "" {
		return ignore(reason)
	}
	if pl.cache.TagIn(pl.staging, p.tag, pl.platforms) {
		return ignore(reasonCacheTag) // BuildKit exporting the build cache
	}
	rev, platform, ok := pl.archTags.Match(p.tag)
	if !ok {
		return ignore(reasonNotArchTag) // the merged index itself, or a tag that is not an arch tag
	}
	if err := types.ValidateRevision(rev); err != nil {
		// Sources reject such a revision, so no build makes this tag: never merge it.
		o.invalid = fmt.Sprintf("arch tag %s:%s: %v", p.repo, p.tag, err)
		return ignore(reasonInvalidRevision)
	}
	if p.digest != "" {
		if err := digest.Digest(p.digest).Validate(); err != nil {
			return o, reject(http.StatusBadRequest, "push of %s:%s: digest %q: %v", p.repo, p.tag, p.digest, err)
		}
	}
	id := p.id
	if id == "" {
		id = derivedID(source, p)
	}
	o.push = &types.RegistryPush{
		ID: id, Pipeline: pl.name, Revision: rev, Platform: platform,
		Tag: p.tag, Digest: p.digest, MediaType: p.mediaType, Timestamp: p.at.UTC(),
	}
	return o, nil
}

// derivedID names a push whose payload has no event id by what it says, so the registry
// retrying the same delivery is de-duplicated; a later push of the same tag differs in its
// digest or its time.
func derivedID(source string, p imagePush) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{source, p.host, p.repo, p.tag, p.digest, p.at.UTC().Format(time.RFC3339Nano)}, "\x00")))
	return source + "-" + hex.EncodeToString(sum[:12])
}

// publishPushes stores every kept push on the bus, counts every outcome under source and
// answers with a Summary. The kept pushes are stored together (storePushes) and the answer
// is 2xx only once the bus acknowledged every one; any failure answers 503, and the
// registry sending the whole body again is safe: what was stored is de-duplicated.
func (r *Receiver) publishPushes(w http.ResponseWriter, req *http.Request, source string, outcomes []registryOutcome) {
	start := time.Now()
	var sum Summary
	var kept []*types.RegistryPush
	for _, o := range outcomes {
		if o.push != nil {
			kept = append(kept, o.push)
			continue
		}
		sum.Ignored++
		outcome := "ignored"
		var attrs []any
		if o.repo != "" {
			attrs = append(attrs, "repository", o.repo, "tag", o.tag)
		}
		if o.invalid != "" {
			outcome = "invalid"
			attrs = append(attrs, "why", o.invalid)
		}
		r.metrics.EventsReceived.WithLabelValues(source, o.action, outcome, o.reason).Inc()
		r.logIgnored(source, o.action, outcome, o.reason, attrs...)
	}
	dups, err := r.storePushes(req.Context(), kept)
	if err != nil {
		r.log.Error("storing registry events failed", "source", source, "events", len(kept), "error", err)
		fail(w, err)
		return
	}
	for _, dup := range dups {
		if dup {
			sum.Duplicates++
		} else {
			sum.Accepted++
		}
	}
	if sum.Accepted > 0 {
		r.metrics.EventsReceived.WithLabelValues(source, "push", "kept", "").Add(float64(sum.Accepted))
	}
	if sum.Duplicates > 0 {
		r.metrics.EventsReceived.WithLabelValues(source, "push", "duplicate", "").Add(float64(sum.Duplicates))
	}
	r.logStored(req, source, len(outcomes), kept, dups, sum, start)
	writeJSON(w, http.StatusOK, sum)
}

// errAnswered is what a decoder returns when it has answered the request itself (a
// webhook validation handshake): nothing is published and nothing more is written.
var errAnswered = errors.New("answered by the decoder")

// registryReceiver serves one registry format: decode authenticates the request and
// turns its body into outcomes; a notification it refuses is answered and counted under
// source as a whole, and otherwise every kept push is published (publishPushes).
func (r *Receiver) registryReceiver(source string, decode func(http.ResponseWriter, *http.Request) ([]registryOutcome, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		outcomes, err := decode(w, req)
		if errors.Is(err, errAnswered) {
			return // a handshake, answered and counted by decode
		}
		if err != nil {
			r.rejectRegistry(w, req, source, err)
			return
		}
		r.publishPushes(w, req, source, outcomes)
	}
}

// rejectRegistry answers a notification that is refused as a whole, and counts it.
func (r *Receiver) rejectRegistry(w http.ResponseWriter, req *http.Request, source string, err error) {
	r.metrics.EventsReceived.WithLabelValues(source, "unknown", "rejected", "").Inc()
	status := fail(w, err)
	r.log.Warn("registry notification rejected", "source", source, "status", status, "error", err, "remote", req.RemoteAddr)
}
