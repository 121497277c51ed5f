package types

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// The revision's state machine: every change of a Revision's phase is one of the methods
// in this file, and nothing else writes Phase. Each is a pure function of the revision and
// its arguments, written to be passed to state.Update: it returns ErrNoChange when
// there is nothing to write (a repeated or late event), and an error wrapping
// ErrTransition when the event cannot apply in the revision's phase.
//
// The phase changes these methods make are tabled in docs/ARCHITECTURE.md ("The
// revision"); TestTransitions checks that table against them, so it is the one diagram
// of the state machine. ReleaseRequested, ReleasePromoted and ReleaseConflicted record a
// release and keep the phase.
//
// MergeRetrying and StepRetrying change no phase: they record a failed attempt that the
// bus will retry, for status and operators.
//
// Each transition that takes a time (at) records it in the revision's timeline
// (Revision.Received, Merged, SignedAt, Finished; PlatformState.Pushed and Built;
// Promotion.At), which the status page shows; callers pass the time the event happened,
// or now.
//
// promoted, failed and conflicted are terminal (Terminal) except that a failed revision
// is tried again when a new image arrives under one of its arch tags, and that a promoted
// revision still promotes its releases.
//
// Releases: a release tag is recorded in any phase, also of a revision never seen (a tag
// pushed before its commit was built); it is promoted to a destination once the revision
// tag is there (ReleaseStepsLeft), so it waits for the build, the merge, the signing and
// that promotion. A release tag is immutable: one that points elsewhere at a destination
// is recorded as conflicted for that release and destination, and the revision keeps its
// phase. A failed or conflicted revision promotes no release; its releases say so in
// their Reason.

// ErrNoChange is returned by a transition that changes nothing: the update is not written.
var ErrNoChange = errors.New("no change")

// ErrTransition is wrapped by the error of a transition that cannot apply in the
// revision's phase.
var ErrTransition = errors.New("illegal revision transition")

func illegal(r *Revision, event string) error {
	return fmt.Errorf("%w: %s in phase %q of %s/%s", ErrTransition, event, r.Phase, r.Pipeline, r.Revision)
}

// ExpectPlatforms adds each platform the revision expects (key → its arch tag) that it
// does not know yet. It changes no phase.
func (r *Revision) ExpectPlatforms(tags map[string]string) {
	if r.Platforms == nil {
		r.Platforms = map[string]PlatformState{}
	}
	for key, tag := range tags {
		if _, ok := r.Platforms[key]; !ok {
			r.Platforms[key] = PlatformState{Tag: tag}
		}
	}
}

// Dispatched records that builds were dispatched for a revision seen for the first time,
// whose source change was received at at. A revision that already has a phase (its pushes
// came first, or a webhook was delivered twice) keeps it.
func (r *Revision) Dispatched(tags map[string]string, at time.Time) error {
	if r.Phase != "" {
		return ErrNoChange
	}
	r.ExpectPlatforms(tags)
	r.Phase = PhaseBuilding
	r.received(at)
	return nil
}

// received sets when the revision was first heard of, once.
func (r *Revision) received(at time.Time) {
	if r.Received.IsZero() {
		r.Received = at
	}
}

// RecordDigests records what the staging registry holds now under the arch tag of each of
// platforms (keys, in the pipeline's order): now maps a key to its digest, and has none
// for a tag that is absent. Before the merge the platforms follow the
// registry. After it the children are pinned: a tag that serves another digest conflicts
// the revision, and the returned violation says so; a deleted tag changes nothing, as the
// index names its children by digest. A revision never seen, with nothing in the
// registry, is not written. at is when the registry was read.
func (r *Revision) RecordDigests(staging string, platforms []string, now map[string]string, at time.Time) (violation string, err error) {
	if r.Phase == PhaseConflicted {
		return "", ErrNoChange // terminal until an operator acts
	}
	if r.Index != "" {
		for _, key := range platforms {
			ps, d := r.Platforms[key], now[key]
			if d != "" && ps.Digest != "" && d != ps.Digest {
				violation = fmt.Sprintf("%s:%s now points at %s, but revision %s was merged with %s; arch tags are immutable once merged",
					staging, ps.Tag, d, r.Revision, ps.Digest)
				r.stop(PhaseConflicted, violation, at)
				return violation, nil
			}
		}
		return "", ErrNoChange
	}
	changed, any := false, false
	for _, key := range platforms {
		ps, d := r.Platforms[key], now[key]
		if ps.Digest != d {
			ps.Digest, changed = d, true
			ps.Pushed = time.Time{}
			if d != "" {
				ps.Pushed = at
			}
			r.Platforms[key] = ps
		}
		any = any || ps.Digest != ""
	}
	if !changed {
		return "", ErrNoChange
	}
	switch {
	case r.Phase == PhaseFailed:
		// Another image is under an arch tag of a revision that failed (its platform check,
		// its build, or its evidence): try again with what is there now.
		r.retry()
	case (r.Phase == "" || r.Phase == PhaseBuilding) && any:
		r.Phase = PhaseWaiting
	case r.Phase == "" && !any:
		return "", ErrNoChange // never seen, and nothing there: write no state
	}
	r.received(at)
	return "", nil
}

// RecordBuild records the outcome of one build attempt of a platform, recorded at at. The
// final failure of a revision not merged yet fails it. A result of an earlier attempt than
// the one recorded (a late delivery) changes nothing.
func (r *Revision) RecordBuild(res BuildResult, at time.Time) error {
	key := res.Request.Platform.String()
	ps := r.Platforms[key]
	fails := res.Outcome == BuildFailed && res.Final && r.Index == ""
	if res.Attempt < ps.Attempts ||
		ps.Build == res.Outcome && ps.BuildReason == res.Reason && ps.Attempts == res.Attempt && ps.Job == res.Job &&
			ps.BuildDigest == res.Digest && !(fails && r.Phase != PhaseFailed) {
		return ErrNoChange
	}
	ps.Build, ps.BuildReason, ps.Attempts, ps.Job = res.Outcome, res.Reason, res.Attempt, res.Job
	if res.Outcome == BuildSucceeded {
		ps.BuildDigest = res.Digest
	}
	ps.Built, ps.BuildDuration = at, res.Duration
	if ps.Tag == "" {
		// The request names "<staging>:<arch tag>"; the state keeps the tag.
		if _, tag, ok := cutTag(res.Request.Image); ok {
			ps.Tag = tag
		}
	}
	if r.Platforms == nil {
		r.Platforms = map[string]PlatformState{}
	}
	r.Platforms[key] = ps
	if fails {
		r.stop(PhaseFailed, fmt.Sprintf("build of %s failed after %d attempts (job %s): %s", key, res.Attempt, res.Job, res.Reason), at)
	}
	return nil
}

// MergeInput is one platform's image a merge took in, and the evidence it was accepted on
// (nil when the merge did not get that far).
type MergeInput struct {
	Digest   string
	Evidence *Evidence
}

// A merge ends in one of four ways, each a method: FinishMerged (the index was pushed),
// FinishFailed (the platform check refused it), FinishConflicted (an immutable tag points
// elsewhere) and FinishUntrusted (an arch image has no evidence). Each takes the inputs
// (platform key → the image merged) and the time the merge ended, and releases the merge
// lease.

// FinishMerged records index, pushed for inputs, at at. The index is recorded with the
// digests it was built from, so that a tag that moved meanwhile is seen as a conflict by
// the next RecordDigests.
func (r *Revision) FinishMerged(inputs map[string]MergeInput, index string, at time.Time) error {
	if index == "" {
		return illegal(r, "a merge ending merged without an index")
	}
	if r.Index != "" {
		return ErrNoChange // another replica recorded it first
	}
	r.takeInputs(inputs)
	r.Phase, r.Reason, r.Index, r.Merging, r.MergeRetry, r.Merged = PhaseMerged, "", index, nil, Retry{}, at
	return nil
}

// FinishFailed ends lease's merge of inputs as failed for reason (a platform check).
// A failure computed from an image a tag no longer holds is not recorded (moved): only
// the lease is released, and the merge is tried again.
func (r *Revision) FinishFailed(lease string, inputs map[string]MergeInput, reason string, at time.Time) (moved bool, err error) {
	return r.refuseMerge(lease, inputs, PhaseFailed, reason, at)
}

// FinishConflicted ends lease's merge of inputs as conflicted for reason (the revision
// tag, or an arch tag against promoter's build, points elsewhere); moved as for
// FinishFailed.
func (r *Revision) FinishConflicted(lease string, inputs map[string]MergeInput, reason string, at time.Time) (moved bool, err error) {
	return r.refuseMerge(lease, inputs, PhaseConflicted, reason, at)
}

// FinishUntrusted ends lease's merge as failed because an arch image has no evidence a
// verify policy accepts (reason says which and what was expected); moved as for
// FinishFailed. Unlike other failures, the revision is tried again when the evidence
// appears (RetryEvidence).
func (r *Revision) FinishUntrusted(lease string, inputs map[string]MergeInput, reason string, at time.Time) (moved bool, err error) {
	moved, err = r.refuseMerge(lease, inputs, PhaseFailed, reason, at)
	if err == nil && !moved {
		r.Untrusted = true
	}
	return moved, err
}

// refuseMerge stops the revision in phase for reason, unless an input moved meanwhile.
func (r *Revision) refuseMerge(lease string, inputs map[string]MergeInput, phase Phase, reason string, at time.Time) (moved bool, err error) {
	if r.Index != "" {
		return false, ErrNoChange // another replica recorded it first
	}
	for key, in := range inputs {
		if r.Platforms[key].Digest != in.Digest {
			return true, r.ReleaseMergeLease(lease)
		}
	}
	r.takeInputs(inputs)
	r.Merging, r.MergeRetry = nil, Retry{}
	r.stop(phase, reason, at)
	return false, nil
}

// takeInputs records the digests (and evidence) a merge worked from.
func (r *Revision) takeInputs(inputs map[string]MergeInput) {
	for key, in := range inputs {
		ps := r.Platforms[key]
		ps.Digest, ps.Evidence = in.Digest, in.Evidence
		r.Platforms[key] = ps
	}
}

// RetryEvidence tries a revision that failed for want of evidence again, now that the
// evidence is there (a signature was added after the push): it waits to be merged.
func (r *Revision) RetryEvidence() error {
	if r.Phase != PhaseFailed || !r.Untrusted || r.Index != "" {
		return ErrNoChange
	}
	r.retry()
	return nil
}

// retry puts a failed revision back to waiting, its failure forgotten.
func (r *Revision) retry() {
	r.Phase, r.Reason, r.MergeRetry, r.Finished, r.Untrusted = PhaseWaiting, "", Retry{}, time.Time{}, false
	for tag, rel := range r.Releases {
		rel.Reason = ""
		r.Releases[tag] = rel
	}
}

// MarkSigned records that the merged index and its children were signed at at.
func (r *Revision) MarkSigned(at time.Time) error {
	if r.Index == "" {
		return illegal(r, "signed without an index")
	}
	if r.Signed {
		return ErrNoChange
	}
	r.Signed, r.SignRetry, r.SignedAt = true, Retry{}, at
	if r.Phase == PhaseMerged {
		r.Phase = PhaseSigned
	}
	return nil
}

// PromotedTo records that dest holds the index as digest since at, copied in took, and
// promotes the revision when every one of destinations is done. It reports whether they
// all are.
func (r *Revision) PromotedTo(dest, digest string, at time.Time, took time.Duration, destinations []string) (all bool, err error) {
	if r.Index == "" {
		return false, illegal(r, "promoted without an index")
	}
	if r.Promotions == nil {
		r.Promotions = map[string]Promotion{}
	}
	r.Promotions[dest] = Promotion{Done: true, Digest: digest, At: at, Duration: took}
	all = r.promotedToAll(destinations)
	if all && !r.Terminal() {
		r.Phase, r.Reason, r.Finished = PhasePromoted, "", at
	}
	return all, nil
}

// PromotionConflicted records that dest refused the revision (its tag points elsewhere):
// the revision is conflicted until an operator acts.
func (r *Revision) PromotionConflicted(dest, reason string, at time.Time) error {
	if r.Index == "" {
		return illegal(r, "a promotion conflict without an index")
	}
	if r.Promotions == nil {
		r.Promotions = map[string]Promotion{}
	}
	r.Promotions[dest] = Promotion{Error: reason, At: at, Conflicted: true}
	r.stop(PhaseConflicted, reason, at)
	return nil
}

// Complete promotes, at at, a merged revision with nothing left to do: signed when
// signing is required, and done at every one of destinations (there may be none).
func (r *Revision) Complete(signRequired bool, destinations []string, at time.Time) error {
	if r.Terminal() || r.Index == "" || (signRequired && !r.Signed) || !r.promotedToAll(destinations) {
		return ErrNoChange
	}
	r.Phase, r.Reason, r.Finished = PhasePromoted, "", at
	return nil
}

// MergeRetrying records a failed merge that will be retried. A merged revision, or one
// with no state yet, is left alone.
func (r *Revision) MergeRetrying(retry Retry) error {
	if r.Index != "" || r.Phase == "" {
		return ErrNoChange
	}
	r.MergeRetry = retry
	return nil
}

// StepRetrying records that step s failed at and will be retried as retry says. A step of
// another index than the revision's (a late message) is left alone.
func (r *Revision) StepRetrying(s Step, retry Retry, at time.Time) error {
	if r.Index == "" || r.Index != s.Index {
		return ErrNoChange
	}
	switch s.Kind {
	case StepSign:
		r.SignRetry = retry
	case StepPromote:
		if s.Tag != "" {
			rel, ok := r.Releases[s.Tag]
			if !ok {
				return ErrNoChange
			}
			rel.Promotions = retrying(rel.Promotions, s.Destination, retry, at)
			r.Releases[s.Tag] = rel
			return nil
		}
		r.Promotions = retrying(r.Promotions, s.Destination, retry, at)
	default:
		return illegal(r, "a retry of unknown step "+string(s.Kind))
	}
	return nil
}

func retrying(prs map[string]Promotion, dest string, retry Retry, at time.Time) map[string]Promotion {
	if prs == nil {
		prs = map[string]Promotion{}
	}
	pr := prs[dest]
	pr.Error, pr.At, pr.Retry = retry.Error, at, retry
	prs[dest] = pr
	return prs
}

// ReleaseRequested records that release tag tag was pushed for the revision's commit at
// at. The phase does not change: a revision not merged yet (or never seen) keeps the tag
// until it is, a failed or conflicted one records why the release will not be promoted.
func (r *Revision) ReleaseRequested(tag string, at time.Time) error {
	if _, ok := r.Releases[tag]; ok {
		return ErrNoChange
	}
	if r.Releases == nil {
		r.Releases = map[string]Release{}
	}
	rel := Release{Requested: at}
	if r.Stopped() {
		rel.Reason = releaseStopped(r.Phase)
	}
	r.Releases[tag] = rel
	return nil
}

// ReleasePromoted records that dest holds the index under release tag tag as digest.
func (r *Revision) ReleasePromoted(tag, dest, digest string, at time.Time) error {
	return r.releaseOutcome(tag, dest, Promotion{Done: true, Digest: digest, At: at})
}

// ReleaseConflicted records that dest refused release tag tag (it points elsewhere there):
// that release is not promoted to dest, and the revision keeps its phase.
func (r *Revision) ReleaseConflicted(tag, dest, reason string, at time.Time) error {
	return r.releaseOutcome(tag, dest, Promotion{Error: reason, At: at, Conflicted: true})
}

func (r *Revision) releaseOutcome(tag, dest string, pr Promotion) error {
	if r.Index == "" {
		return illegal(r, "a release promotion without an index")
	}
	rel, ok := r.Releases[tag]
	if !ok {
		return illegal(r, "a promotion of release "+tag+", which was never requested")
	}
	if old := rel.Promotions[dest]; old.Done == pr.Done && old.Conflicted == pr.Conflicted && old.Digest == pr.Digest && old.Error == pr.Error {
		return ErrNoChange
	}
	if rel.Promotions == nil {
		rel.Promotions = map[string]Promotion{}
	}
	rel.Promotions[dest] = pr
	r.Releases[tag] = rel
	return nil
}

// ReleaseStepsLeft are the promote steps of releases the revision is ready for, by tag
// and then in p's destination order: each release to each destination the revision tag
// reached (signed first when p signs), unless it is done or conflicted there. A failed or
// conflicted revision has none.
func (r *Revision) ReleaseStepsLeft(p Pipeline) []Step {
	if !r.Advancing() || len(r.Releases) == 0 {
		return nil
	}
	tags := make([]string, 0, len(r.Releases))
	for tag := range r.Releases {
		tags = append(tags, tag)
	}
	sort.Strings(tags)
	var steps []Step
	for _, tag := range tags {
		for _, dest := range p.Destinations() {
			pr := r.Releases[tag].Promotions[dest]
			if r.Promotions[dest].Done && !pr.Done && !pr.Conflicted {
				steps = append(steps, Step{Kind: StepPromote, Pipeline: r.Pipeline, Revision: r.Revision, Index: r.Index, Destination: dest, Tag: tag})
			}
		}
	}
	return steps
}

// stop ends the revision in phase (failed or conflicted) for reason at at; its releases
// say that they are not promoted any further.
func (r *Revision) stop(phase Phase, reason string, at time.Time) {
	r.Phase, r.Reason, r.Finished = phase, reason, at
	for tag, rel := range r.Releases {
		rel.Reason = releaseStopped(phase)
		r.Releases[tag] = rel
	}
}

func releaseStopped(phase Phase) string {
	return fmt.Sprintf("not promoted (any further): the revision is %s, see its reason", phase)
}

func (r *Revision) promotedToAll(destinations []string) bool {
	for _, d := range destinations {
		if !r.Promotions[d].Done {
			return false
		}
	}
	return true
}

// The merge lease (Revision.Merging) changes no phase: it says which replica merges the
// revision, so that only one writes its index. These are the only writes of it besides
// the Finish methods, which release it.

// TakeMergeLease makes l the revision's merge lease until ttl after now, unless another
// holder's lease is live: then it returns ErrLeaseHeld (r.Merging names the holder). It
// returns the expired lease it took over, if any,
// for the caller to log. The caller checks first that the revision is to be merged
// (Mergeable and the evidence rules).
func (r *Revision) TakeMergeLease(l Lease, ttl time.Duration, now time.Time) (expired *Lease, err error) {
	if r.Merging.Live(now) {
		return nil, ErrLeaseHeld
	}
	expired = r.Merging
	l.Expires = now.Add(ttl).UTC()
	r.Merging = &l
	return expired, nil
}

// HoldsMergeLease reports whether id is the revision's merge lease.
func (r *Revision) HoldsMergeLease(id string) bool {
	return r.Merging != nil && r.Merging.ID == id
}

// RenewMergeLease extends lease id until ttl after now. A lease that is not the
// revision's any more (the merge finished, or another replica took it over) is left
// alone: ErrNoChange.
func (r *Revision) RenewMergeLease(id string, ttl time.Duration, now time.Time) error {
	if !r.HoldsMergeLease(id) {
		return ErrNoChange
	}
	r.Merging.Expires = now.Add(ttl).UTC()
	return nil
}

// ReleaseMergeLease drops lease id, so that the next try need not wait for it to
// expire; ErrNoChange when id does not hold it.
func (r *Revision) ReleaseMergeLease(id string) error {
	if !r.HoldsMergeLease(id) {
		return ErrNoChange
	}
	r.Merging = nil
	return nil
}
