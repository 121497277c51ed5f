package merge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// Merger turns per-platform images in the staging registry into merged indexes. The
// registry is the source of truth: a push notification only says "look at this revision
// now", and the merger reads every arch tag's current digest from the registry before it
// records or merges anything.
//
// The revision state lives in the bus's KV bucket and is changed only by compare-and-swap,
// and one merge is held by a lease, so any number of replicas may handle pushes of the same
// revision: exactly one writes the index, and since the same children always give the same
// index, a merge repeated after a crash writes nothing new.
type Merger struct {
	store     *state.Store
	reg       registry.Client
	pipelines map[string]types.Pipeline
	metrics   *metrics.Metrics
	log       *slog.Logger
	owner     string
	lease     time.Duration
	policies  map[string]Policy
	buildWait time.Duration
}

// New merges the revisions of pipelines, keeping their state in store and reading and
// writing images through reg.
func New(store *state.Store, reg registry.Client, pipelines []types.Pipeline, opts ...Option) (*Merger, error) {
	o := options{metrics: metrics.Discard(), log: slog.New(slog.DiscardHandler), owner: "promoter", lease: DefaultLease, buildWait: DefaultBuildWait}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	m := &Merger{store: store, reg: reg, pipelines: map[string]types.Pipeline{}, metrics: o.metrics, log: o.log, owner: o.owner, lease: o.lease,
		policies: o.policies, buildWait: o.buildWait}
	for _, p := range pipelines {
		m.pipelines[p.Name] = p
	}
	return m, nil
}

// HandlePush takes a push notification as a hint that ev's revision changed, reads the
// revision's arch tags from the registry, records what the registry holds and merges the
// revision once every platform is there. A notification whose digest is not what its tag
// points at now is stale (or forged): it is counted and logged, and only the registry's
// answer is acted on.
//
// It returns the revision state afterwards. Errors are transient (registry or bus
// unavailable, or an InProgressError) and worth retrying; a platform mismatch or a
// conflict is recorded in the state, not returned.
func (m *Merger) HandlePush(ctx context.Context, ev types.RegistryPush) (*types.Revision, error) {
	p, ok := m.pipelines[ev.Pipeline]
	if !ok {
		return nil, fmt.Errorf("merging a push of %s: %w %q", ev.Revision, types.ErrUnknownPipeline, ev.Pipeline)
	}
	if !p.HasPlatform(ev.Platform) {
		m.log.Warn("ignoring push", "reason", fmt.Sprintf("platform %s is not one of pipeline %s's", ev.Platform, p.Name))
		return nil, nil
	}
	return m.sync(ctx, p, ev.Revision, &ev)
}

// Sync reads revision's arch tags from the registry and acts on them as HandlePush does,
// without a notification: for the reconciler and for retries.
func (m *Merger) Sync(ctx context.Context, p types.Pipeline, revision string) (*types.Revision, error) {
	return m.sync(ctx, p, revision, nil)
}

func (m *Merger) sync(ctx context.Context, p types.Pipeline, revision string, hint *types.RegistryPush) (*types.Revision, error) {
	log := m.log.With("pipeline", p.Name, "revision", revision)
	var (
		rev   *types.Revision
		wrote recorded
		lease types.Lease
		err   error
	)
	for reread := false; ; reread = true {
		notified := hint
		if reread {
			notified = nil // its tag was awaited and checked on the first read
		}
		var now map[string]string
		if now, err = m.read(ctx, p, revision, notified, log); err != nil {
			return nil, err
		}
		lease = m.newLease()
		rev, wrote, err = state.Update(ctx, m.store, p.Name, revision, func(r *types.Revision) (recorded, error) {
			// Two pushes of one revision handled at once each read the registry before the
			// other's tag was there; the one that writes second must not erase the digest
			// the first recorded. A digest the state has and this read does not see is read
			// again once; absent then too, the tag was deleted.
			if !reread && misses(r, now) {
				return recorded{}, errStaleRead
			}
			r.ExpectPlatforms(p.ArchTags(r.Revision))
			violation, err := r.RecordDigests(string(p.Staging), p.Keys(), now, time.Now().UTC())
			if err != nil || violation != "" {
				return recorded{violation: violation}, err
			}
			// The write that completes the revision claims its merge too: one
			// compare-and-swap, not two. A live lease of another holder is left to it.
			if !m.mergeable(p, r) {
				return recorded{}, nil
			}
			expired, _ := r.TakeMergeLease(lease, m.lease, time.Now())
			return recorded{expired: expired}, nil
		})
		if !errors.Is(err, errStaleRead) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	m.tookOver(p, revision, wrote.expired)
	if violation := wrote.violation; violation != "" {
		m.metrics.ImmutabilityViolations.Inc()
		log.Error("immutable arch tag moved", "reason", violation)
		return rev, nil
	}
	if rev.Phase == "" {
		return nil, nil // nothing of this revision is in the registry, and nothing was before
	}
	if rev, err = m.overdue(ctx, p, rev, m.awaitsBuild(p, rev), log); err != nil {
		return nil, err
	}
	if rev, err = m.recheck(ctx, p, rev, log); err != nil {
		return nil, err
	}
	return m.mergeIfComplete(ctx, p, rev, lease.ID)
}

// recorded is what sync's write decided: the immutability violation it found, or the
// expired lease of another holder it took over.
type recorded struct {
	violation string
	expired   *types.Lease
}

// recheck tries a revision that failed for want of evidence again once the evidence is
// there: a signature added after its arch tag was pushed. Nothing is written while the
// evidence is still missing.
func (m *Merger) recheck(ctx context.Context, p types.Pipeline, rev *types.Revision, log *slog.Logger) (*types.Revision, error) {
	if rev.Phase != types.PhaseFailed || !rev.Untrusted {
		return rev, nil
	}
	for _, key := range p.Keys() {
		if rev.Platforms[key].Digest == "" {
			return rev, nil // a tag was deleted since: its next push retries the revision
		}
	}
	v, err := m.vouch(ctx, p, rev)
	if err != nil || v.phase != "" || len(v.waiting) > 0 {
		return rev, err
	}
	log.Info("evidence found for a revision that failed for want of it; merging it again")
	return m.store.Update(ctx, p.Name, rev.Revision, func(r *types.Revision) error { return r.RetryEvidence() })
}

// overdue fails rev when the arch tags of waiting have held images no build of promoter's
// reported (and no policy accepts) for longer than the build wait
// (types.Revision.BuildOverdue).
func (m *Merger) overdue(ctx context.Context, p types.Pipeline, rev *types.Revision, waiting []string, log *slog.Logger) (*types.Revision, error) {
	if len(waiting) == 0 || rev.Index != "" || rev.Terminal() {
		return rev, nil
	}
	after, err := m.store.Update(ctx, p.Name, rev.Revision, func(r *types.Revision) error {
		return r.BuildOverdue(string(p.Staging), waiting, m.buildWait, time.Now().UTC())
	})
	if err != nil {
		return nil, err
	}
	if after.Phase == types.PhaseFailed && rev.Phase != types.PhaseFailed {
		m.metrics.Merges.WithLabelValues("failed").Inc()
		log.Error("merge refused: no build of promoter's vouches for an arch image", "reason", after.Reason)
	} else {
		log.Info("waiting for promoter's build to report the arch images", "platforms", waiting)
	}
	return after, nil
}

// errStaleRead says a registry read is older than the revision state: another push of the
// revision was recorded since.
var errStaleRead = errors.New("the registry read is older than the revision state; reading it again")

// read is what the registry holds under revision's arch tags now; for a notified push, it
// waits until its own tag is visible (await) and counts a notification the registry
// contradicts.
func (m *Merger) read(ctx context.Context, p types.Pipeline, revision string, hint *types.RegistryPush, log *slog.Logger) (map[string]string, error) {
	now, err := m.resolve(ctx, p, revision)
	if err != nil {
		return nil, err
	}
	// A notification that names no digest (Quay, some CloudEvents) claims nothing to check:
	// the registry's answer is the digest.
	if hint != nil && hint.Digest != "" && now[hint.Platform.String()] != hint.Digest {
		key := hint.Platform.String()
		if now[key], err = m.await(ctx, p, hint, now[key]); err != nil {
			return nil, err
		}
		if got := now[key]; got != hint.Digest {
			m.metrics.StaleEvents.Inc()
			log.Info("stale notification: the registry holds another digest under the tag; acting on the registry",
				"tag", hint.Tag, "event_digest", hint.Digest, "registry_digest", orAbsent(got), "event_id", hint.ID)
		}
	}
	return now, nil
}

// misses reports whether an unmerged revision has recorded a digest that the read now
// does not show.
func misses(r *types.Revision, now map[string]string) bool {
	if r.Index != "" {
		return false // the children are pinned; RecordDigests ignores absent tags then
	}
	for key, ps := range r.Platforms {
		if ps.Digest != "" && now[key] == "" {
			return true
		}
	}
	return false
}

// mergeIfComplete merges rev if every platform has a digest and nothing was merged yet.
// leaseID is the lease this replica wrote with rev, if any: then rev is already claimed.
func (m *Merger) mergeIfComplete(ctx context.Context, p types.Pipeline, rev *types.Revision, leaseID string) (*types.Revision, error) {
	if !m.mergeable(p, rev) {
		return rev, nil
	}
	var (
		c   *claim
		err error
	)
	if rev.HoldsMergeLease(leaseID) {
		c = &claim{id: leaseID, rev: rev}
	} else if c, err = m.claim(ctx, p, rev.Revision); err != nil {
		return rev, err
	}
	if c == nil {
		// Not mergeable any more: merged or failed by someone else meanwhile, or the read
		// was stale (a JetStream follower answered). Only the first two may end here.
		cur, err := m.store.Get(ctx, p.Name, rev.Revision)
		if err != nil {
			return nil, err
		}
		if cur.Unmerged() {
			return cur, errUnsettled
		}
		return cur, nil
	}
	stop := make(chan struct{})
	go m.renew(ctx, p, c, stop)
	defer close(stop)

	rev = c.rev
	log := m.log.With("pipeline", p.Name, "repo", p.Staging, "revision", rev.Revision)
	// Nothing is merged, and so nothing signed, without evidence for every input.
	v, err := m.vouch(ctx, p, rev)
	switch {
	case err != nil:
		m.metrics.Merges.WithLabelValues("error").Inc()
		m.release(ctx, p, c)
		return nil, err
	case len(v.waiting) > 0:
		m.release(ctx, p, c)
		return m.overdue(ctx, p, rev, v.waiting, log)
	case v.phase != "":
		m.metrics.Merges.WithLabelValues(string(v.phase)).Inc()
		log.Error("merge refused: no evidence for an arch image", "reason", v.reason)
		refuse := (*types.Revision).FinishConflicted
		switch {
		case v.untrusted:
			refuse = (*types.Revision).FinishUntrusted
		case v.phase == types.PhaseFailed:
			refuse = (*types.Revision).FinishFailed
		}
		return m.refuse(ctx, p, c, refuse, v.reason)
	}
	inputs := v.inputs
	var children []Child
	for _, pl := range p.Platforms {
		ps := rev.Platforms[pl.String()]
		// Pinned by the digest the registry reported (the tag may move), named with the
		// tag for error messages.
		children = append(children, Child{Ref: p.Staging.Tag(ps.Tag) + "@" + ps.Digest, Platform: pl})
	}
	target := p.Staging.Tag(rev.Revision)
	start := time.Now()
	res, err := Build(ctx, m.reg, Request{Target: target, Children: children, Revision: rev.Revision, Source: p.Source.Repo})
	if errors.Is(err, ErrPlatform) {
		m.metrics.Merges.WithLabelValues("failed").Inc()
		log.Error("merge refused: platform mismatch", "reason", err.Error())
		return m.refuse(ctx, p, c, (*types.Revision).FinishFailed, err.Error())
	}
	if err != nil {
		m.metrics.Merges.WithLabelValues("error").Inc()
		m.release(ctx, p, c)
		return nil, fmt.Errorf("merging %s: %w", target, err)
	}
	outcome, err := Push(ctx, m.reg, target, res)
	var conflict *types.TagImmutableError
	if errors.As(err, &conflict) {
		m.metrics.Merges.WithLabelValues("conflicted").Inc()
		m.metrics.ImmutabilityViolations.Inc()
		log.Error("merge refused: revision tag is immutable", "reason", err.Error())
		return m.refuse(ctx, p, c, (*types.Revision).FinishConflicted, err.Error())
	}
	if err != nil {
		m.metrics.Merges.WithLabelValues("error").Inc()
		m.release(ctx, p, c)
		return nil, err
	}
	m.metrics.Merges.WithLabelValues(string(outcome)).Inc()
	m.metrics.MergeDuration.Observe(time.Since(start).Seconds())
	var kids []string
	for _, c := range res.Children {
		kids = append(kids, c.Platform.String()+"="+c.Digest)
	}
	log.Info("merged", "digest", res.Digest, "outcome", string(outcome), "children", kids, "seconds", time.Since(start).Seconds())
	return m.store.Update(ctx, p.Name, rev.Revision, func(r *types.Revision) error {
		return r.FinishMerged(inputs, res.Digest, time.Now().UTC())
	})
}

// inputsOf are rev's platform digests, without evidence: what a refused merge records.
func inputsOf(p types.Pipeline, rev *types.Revision) map[string]types.MergeInput {
	inputs := map[string]types.MergeInput{}
	for _, key := range p.Keys() {
		inputs[key] = types.MergeInput{Digest: rev.Platforms[key].Digest}
	}
	return inputs
}

// errUnsettled says the revision looked complete, then not, with nothing merged: its
// state is read again on the retry rather than trusted.
var errUnsettled = errors.New("revision state changed while claiming the merge; reading it again")

// errInputsMoved says an arch tag moved while a merge that was about to fail was running:
// the failure is about an image the tag no longer holds, so it is not recorded, and the
// merge is tried again with the new one.
var errInputsMoved = errors.New("an arch tag moved during the merge; merging again with what the registry holds now")

// refusal is one of the ways a merge ends without an index (types.Revision.FinishFailed,
// FinishConflicted, FinishUntrusted): given the lease, the inputs, the reason and the
// time, it reports whether an input moved meanwhile.
type refusal func(r *types.Revision, lease string, inputs map[string]types.MergeInput, reason string, at time.Time) (moved bool, err error)

// refuse records the end of c's merge attempt with refusal, for reason. A refusal about an
// image a tag no longer holds is not recorded (the input moved): errInputsMoved asks the
// bus to try the merge again with what the registry holds now.
func (m *Merger) refuse(ctx context.Context, p types.Pipeline, c *claim, refuse refusal, reason string) (*types.Revision, error) {
	inputs := inputsOf(p, c.rev)
	rev, moved, err := state.Update(ctx, m.store, p.Name, c.rev.Revision, func(r *types.Revision) (bool, error) {
		return refuse(r, c.id, inputs, reason, time.Now().UTC())
	})
	if err == nil && moved {
		return rev, errInputsMoved
	}
	return rev, err
}

func orAbsent(digest string) string {
	if digest == "" {
		return "absent"
	}
	return digest
}
