package events

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// push is a source push as every provider describes it.
type push struct {
	delivery string   // provider's delivery id, for the logs; empty when it gave none
	repos    []string // every URL form the provider gives for the repository
	ref      string
	revision string // what ref points at now: a commit, or an annotated tag's tag object
	// commit is the commit a tag push names: an annotated tag's target, never the tag
	// object. Empty when the provider gave none; commitField names where it looked.
	commit, commitField string
}

var zeroRevision = regexp.MustCompile(`^0+$`)

// publishSource turns a push into a SourceChanged event when it is for a pipeline's
// repository and branch, or into a ReleaseTagged event when it pushes a tag that a
// pipeline of the repository releases, and answers.
func (r *Receiver) publishSource(w http.ResponseWriter, req *http.Request, source string, p push) {
	if zeroRevision.MatchString(p.revision) {
		r.ignoreSource(w, source, reasonRefDeleted, "ref deleted")
		return
	}
	if tag, ok := strings.CutPrefix(p.ref, "refs/tags/"); ok {
		r.publishRelease(w, req, source, p, tag)
		return
	}
	if err := types.ValidateRevision(p.revision); err != nil {
		r.rejectSource(w, req, source, reject(http.StatusBadRequest, "revision is not a commit id: %v", err))
		return
	}
	branch, isBranch := strings.CutPrefix(p.ref, "refs/heads/")
	if !isBranch {
		r.ignoreSource(w, source, reasonNotBranchOrTag, "not a branch or tag: "+p.ref)
		return
	}
	pl, ok := r.sourceFor(p.repos, branch)
	if !ok {
		r.ignoreSource(w, source, reasonNoPipeline, "no pipeline follows this repository and branch")
		return
	}
	ev := types.SourceChanged{
		ID: p.delivery, Pipeline: pl.name, Repo: firstNonEmpty(p.repos), Ref: p.ref, Revision: p.revision,
		Received: r.now().UTC(),
	}
	// The message id is the pipeline and revision (SourceChanged.MsgID), not the delivery
	// id: a redelivery under a new id, another forge's hook and the source poller's find
	// of the same head are the one message they describe.
	r.publishEvent(w, req, source, types.SubjectSourceChanged, ev.MsgID(), ev, "source push", "pipeline", pl.name, "revision", p.revision)
}

// publishRelease turns a push of tag into a ReleaseTagged event for the first pipeline of
// the repository whose release patterns match it, naming the commit the tag points at.
func (r *Receiver) publishRelease(w http.ResponseWriter, req *http.Request, source string, p push, tag string) {
	pl, ok := r.releaseFor(p.repos, tag)
	if !ok {
		r.ignoreSource(w, source, reasonNotReleaseTag, "no pipeline of this repository releases tag "+tag)
		return
	}
	if p.commit == "" || zeroRevision.MatchString(p.commit) {
		r.rejectSource(w, req, source, reject(http.StatusBadRequest, "push of release tag %s names no commit (%s is empty)", tag, p.commitField))
		return
	}
	if err := types.ValidateRevision(p.commit); err != nil {
		r.rejectSource(w, req, source, reject(http.StatusBadRequest, "%s of tag %s is not a commit id: %v", p.commitField, tag, err))
		return
	}
	if err := validateReleaseTag(tag); err != nil {
		r.rejectSource(w, req, source, reject(http.StatusBadRequest,
			"tag %s matches source.releaseTags of pipeline %s but cannot be promoted: %v; narrow the patterns or use another tag name", tag, pl.name, err))
		return
	}
	id := deliveryID(source, p.delivery, pl.name, tag, p.commit)
	ev := types.ReleaseTagged{
		ID: id, Pipeline: pl.name, Repo: firstNonEmpty(p.repos), Tag: tag, Revision: p.commit,
		Received: r.now().UTC(),
	}
	r.publishEvent(w, req, source, types.SubjectReleaseTagged, id, ev, "release tag push", "pipeline", pl.name, "tag", tag, "revision", p.commit)
}

// deliveryID is the bus message id of a delivery: the provider's id, or one derived from
// what the event says, so a redelivery without an id is still recognised.
func deliveryID(source, delivery string, parts ...string) string {
	if delivery != "" {
		return delivery
	}
	sum := sha256.Sum256([]byte(source + "\x00" + strings.Join(parts, "\x00")))
	return source + "-" + hex.EncodeToString(sum[:12])
}

// publishEvent stores a kept source event and answers: 200 with the summary once the bus
// has it, or the bus's failure.
func (r *Receiver) publishEvent(w http.ResponseWriter, req *http.Request, source, subject, id string, ev any, what string, attrs ...any) {
	dup, err := r.pub.Publish(req.Context(), subject, id, ev)
	if err != nil {
		r.log.Error("storing source event failed", "source", source, "delivery", id, "error", err)
		fail(w, err)
		return
	}
	sum := Summary{Accepted: 1}
	outcome := "kept"
	if dup {
		sum, outcome = Summary{Duplicates: 1}, "duplicate"
	}
	r.metrics.EventsReceived.WithLabelValues(source, "push", outcome, "").Inc()
	r.log.Info(what, append([]any{"outcome", outcome, "source", source, "delivery", id}, attrs...)...)
	writeJSON(w, http.StatusOK, sum)
}

// ignoreSource acknowledges a source webhook that is not kept, counted and logged with its
// reason (one of the reason* constants); why says more in the log line.
func (r *Receiver) ignoreSource(w http.ResponseWriter, source, reason, why string) {
	r.metrics.EventsReceived.WithLabelValues(source, "push", "ignored", reason).Inc()
	r.logIgnored(source, "push", "ignored", reason, "why", why)
	writeJSON(w, http.StatusOK, Summary{Ignored: 1})
}

// rejectSource counts and answers a rejected source request.
func (r *Receiver) rejectSource(w http.ResponseWriter, req *http.Request, source string, err error) {
	r.metrics.EventsReceived.WithLabelValues(source, "push", "rejected", "").Inc()
	status := fail(w, err)
	r.log.Warn("source webhook rejected", "source", source, "status", status, "error", err, "remote", req.RemoteAddr)
}

func firstNonEmpty(ss []string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// ErrInvalidReleaseTag is wrapped by validateReleaseTag's errors.
var ErrInvalidReleaseTag = errors.New("invalid release tag")

// validateReleaseTag checks that git tag tag can be an image tag at the destinations: the
// OCI tag grammar, and not a tag of the signatures' and attestations' namespace.
func validateReleaseTag(tag string) error {
	if err := types.ValidateTag(tag); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReleaseTag, err)
	}
	if registry.IsReservedTag(tag) {
		return fmt.Errorf("%w %q: sha256-... tags hold signatures and attestations", ErrInvalidReleaseTag, tag)
	}
	return nil
}
