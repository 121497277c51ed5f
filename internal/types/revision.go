package types

import "time"

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
}

// Promotion is the state of one destination of a revision.
type Promotion struct {
	Done   bool      `json:"done"`
	Digest string    `json:"digest,omitempty"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at,omitempty"`
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
	// MergeStarted is set by the replica that claimed the merge, so that only one replica
	// writes the index; a claim older than a minute is considered abandoned.
	MergeStarted time.Time            `json:"mergeStarted,omitzero"`
	Signed       bool                 `json:"signed,omitempty"`
	Promotions   map[string]Promotion `json:"promotions,omitempty"`
	Updated      time.Time            `json:"updated"`
}

// Terminal reports whether nothing more will happen to the revision on its own.
func (r *Revision) Terminal() bool {
	switch r.Phase {
	case PhasePromoted, PhaseFailed, PhaseConflicted:
		return true
	}
	return false
}
