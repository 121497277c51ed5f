package types

import (
	"errors"
	"fmt"
	"time"
)

// ErrTagImmutable is what every refusal to move a tag matches with errors.Is: an arch tag,
// the merged revision tag or a destination tag already points at another digest, and
// promoter never moves a tag that is not listed as mutable.
var ErrTagImmutable = errors.New("immutable tag points at another digest")

// TagImmutableError says which tag was not moved: it points at Existing, and the caller
// would have moved it to Want. It matches ErrTagImmutable with errors.Is.
type TagImmutableError struct {
	// Ref is the tag, "host/repo:tag".
	Ref      string
	Existing string
	Want     string
	// Remedy tells the user what to do instead (it depends on which tag it is).
	Remedy string
}

func (e *TagImmutableError) Error() string {
	return fmt.Sprintf("%s already points at %s, refusing to move it to %s: tags are immutable; %s", e.Ref, e.Existing, e.Want, e.Remedy)
}

// Unwrap makes errors.Is(err, ErrTagImmutable) true.
func (e *TagImmutableError) Unwrap() error { return ErrTagImmutable }

// Phase is where a revision is in the flow.
type Phase string

// Revision phases, in flow order; Failed and Conflicted are terminal until an operator acts.
const (
	PhaseBuilding   Phase = "building"
	PhaseWaiting    Phase = "waiting"    // some platforms pushed, not all
	PhaseMerged     Phase = "merged"     // index pushed to staging
	PhaseSigned     Phase = "signed"     // index and children signed
	PhasePromoted   Phase = "promoted"   // every destination promoted
	PhaseFailed     Phase = "failed"     // a platform check, build or step failed; see Reason
	PhaseConflicted Phase = "conflicted" // an immutable tag already points elsewhere; see Reason
)

// Phases lists every phase, for metrics that report a gauge per phase.
var Phases = []Phase{PhaseBuilding, PhaseWaiting, PhaseMerged, PhaseSigned, PhasePromoted, PhaseFailed, PhaseConflicted}

// PlatformState is what is known of one platform of a revision.
type PlatformState struct {
	Tag    string `json:"tag"`
	Digest string `json:"digest,omitempty"`
	// Build is the state of the build dispatched for this platform, when one was.
	Build       BuildOutcome `json:"build,omitempty"`
	BuildReason string       `json:"buildReason,omitempty"`
	// Attempts is the attempt of the last build result recorded, and Job the Job (or
	// local build) that ran it.
	Attempts int    `json:"attempts,omitempty"`
	Job      string `json:"job,omitempty"`
	// Built is when the last build result was recorded, and BuildDuration how long that
	// attempt ran (so it started at Built - BuildDuration).
	Built         time.Time     `json:"built,omitzero"`
	BuildDuration time.Duration `json:"buildDuration,omitempty"`
	// BuildDigest is the digest the last successful build reported pushing: the only image
	// of the platform a pipeline that builds merges (see evidence.go).
	BuildDigest string `json:"buildDigest,omitempty"`
	// Pushed is when Digest was first seen under the arch tag.
	Pushed time.Time `json:"pushed,omitzero"`
	// Evidence is why Digest was accepted into the merge; set when the revision is merged.
	Evidence *Evidence `json:"evidence,omitempty"`
}

// Promotion is the state of one destination of a revision, or of one of its releases.
type Promotion struct {
	Done   bool      `json:"done"`
	Digest string    `json:"digest,omitempty"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at,omitempty"`
	// Duration is how long the copy that made it Done took (nanoseconds in JSON).
	Duration time.Duration `json:"duration,omitempty"`
	// Conflicted is set when the destination tag points at another digest; Error says
	// which. promoter never moves it, so the promotion ends there.
	Conflicted bool `json:"conflicted,omitempty"`
	// Retry is set while the promotion fails and is being retried.
	Retry Retry `json:"retry,omitzero"`
}

// Retry is what is known of a step that failed and will be tried again: how often it
// failed, the last error and when the next attempt is due. It is informational (status
// and operators); the schedule itself is kept by the bus's redelivery.
type Retry struct {
	Failures int       `json:"failures"`
	Error    string    `json:"error,omitempty"`
	Next     time.Time `json:"next,omitzero"`
}

// Lease is a claim on a step held by one daemon process (Owner) until Expires. The owner
// renews it while it works; a lease that expired belongs to a process that stopped, and
// any replica may take it over.
type Lease struct {
	Owner string `json:"owner"`
	// ID is unique to one claim, so an owner's renewal never extends a later claim.
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// Live reports whether the lease still holds at now.
func (l *Lease) Live(now time.Time) bool {
	return l != nil && now.Before(l.Expires)
}

// Revision is the state of one revision of one pipeline, stored in the bus's KV bucket and
// updated only by compare-and-swap.
type Revision struct {
	Pipeline string `json:"pipeline"`
	Revision string `json:"revision"`
	Phase    Phase  `json:"phase"`
	Reason   string `json:"reason,omitempty"`
	// Platforms is keyed by Platform.String().
	Platforms map[string]PlatformState `json:"platforms"`
	Index     string                   `json:"index,omitempty"`
	// Merging is the lease of the replica merging the revision, so that only one replica
	// writes the index.
	Merging *Lease `json:"merging,omitempty"`
	// MergeRetry and SignRetry are set while that step fails and is being retried.
	MergeRetry Retry `json:"mergeRetry,omitzero"`
	// Untrusted is set while the revision is failed because an arch image had no evidence
	// a verify policy accepts (FinishUntrusted): a signature added later lets it merge
	// (RetryEvidence), as a new image under the tag does.
	Untrusted  bool                 `json:"untrusted,omitempty"`
	Signed     bool                 `json:"signed,omitempty"`
	SignRetry  Retry                `json:"signRetry,omitzero"`
	Promotions map[string]Promotion `json:"promotions,omitempty"`
	// Releases are the release tags (git tags matching the pipeline's release patterns)
	// pushed for the revision's commit, keyed by tag.
	Releases map[string]Release `json:"releases,omitempty"`
	Updated  time.Time          `json:"updated"`

	// The revision's timeline, each set by the transition that got there: Received when
	// it was first heard of (the source webhook or poll that dispatched its builds, or
	// the first arch tag seen), Merged when its index was recorded, SignedAt when it was
	// signed, and Finished when it reached promoted, failed or conflicted (cleared when a
	// failed revision is tried again). Per platform and per destination times are in
	// Platforms and Promotions.
	Received time.Time `json:"received,omitzero"`
	Merged   time.Time `json:"merged,omitzero"`
	SignedAt time.Time `json:"signedAt,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Release is one release tag of a revision: the revision's index is promoted under the tag
// to each destination once the revision tag is there. It waits in the state until then.
type Release struct {
	// Requested is when the tag push was received.
	Requested time.Time `json:"requested"`
	// Reason says why the release is not promoted: the revision failed or conflicted.
	Reason string `json:"reason,omitempty"`
	// Promotions are keyed by destination, like Revision.Promotions.
	Promotions map[string]Promotion `json:"promotions,omitempty"`
}

// Terminal reports whether nothing more will happen to the revision on its own.
func (r *Revision) Terminal() bool {
	switch r.Phase {
	case PhasePromoted, PhaseFailed, PhaseConflicted:
		return true
	}
	return false
}

// Stopped reports whether the revision failed or conflicted: nothing of it is merged,
// signed or promoted any further until a new image (or an operator) retries it.
func (r *Revision) Stopped() bool {
	return r.Phase == PhaseFailed || r.Phase == PhaseConflicted
}

// Advancing reports whether the revision is merged and not stopped: its signing,
// promotions and releases go on (also once it is promoted, for its releases).
func (r *Revision) Advancing() bool {
	return r.Index != "" && !r.Stopped()
}

// Unmerged reports whether the revision still waits for its merge: no index, and not
// stopped.
func (r *Revision) Unmerged() bool {
	return r.Index == "" && !r.Stopped()
}

// Mergeable reports whether the revision waits for its merge and has every one of p's
// platforms' digests. Whether the evidence lets those images in is the merge's to check
// (BuildEvidence, and a verify policy).
func (r *Revision) Mergeable(p Pipeline) bool {
	if !r.Unmerged() {
		return false
	}
	for _, key := range p.Keys() {
		if r.Platforms[key].Digest == "" {
			return false
		}
	}
	return true
}
