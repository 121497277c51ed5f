package advance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// The steps after a merge, as the advancer needs them: *sign.Signer and
// *promote.Promoter, or a test's recording fakes.
type (
	Signer interface {
		// Sign signs ref (an index by digest) and its platform children.
		Sign(ctx context.Context, ref string) ([]sign.Signed, error)
	}
	Promoter interface {
		// Promote copies src (by digest) with signatures and referrers to each target
		// (promote.DestinationTarget: the revision tag, then d's mutable tags;
		// promote.ReleaseTarget: a release tag alone, immutable), with one result and one
		// error per target.
		Promote(ctx context.Context, src string, targets []promote.Target) ([]*promote.Result, []error)
	}
)

// Advancer moves merged revisions through signing and promotion, and then promotes their
// release tags (types.Revision.ReleaseStepsLeft): each release to each destination is a
// promote step of its own, after the revision tag reached that destination, so it only
// writes the tag and is retried on its own. Each step is a message on
// types.SubjectSteps: the bus redelivers a failed one on its own schedule, so a failing
// destination is retried within seconds, not at the next reconcile, and a restart keeps the
// schedule. Each step records its outcome in the revision state before its message is
// acknowledged, and publishes the steps that follow it, so a crash between the two only
// repeats a step, which is idempotent: signing does not pile up signatures and promotion
// skips what exists.
type Advancer struct {
	store     *state.Store
	pub       bus.Publisher
	pipelines []types.Pipeline
	sign      Signer
	promote   Promoter
	log       *slog.Logger
	metrics   *metrics.Metrics
}

// New advances the revisions of pipelines kept in store, publishing steps through pub.
// signer may be nil when no pipeline signs.
func New(store *state.Store, pub bus.Publisher, pipelines []types.Pipeline, signer Signer, promoter Promoter, opts ...Option) (*Advancer, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if promoter == nil {
		return nil, errors.New("advance: no promoter")
	}
	for _, p := range pipelines {
		if p.Sign && signer == nil {
			return nil, fmt.Errorf("advance: pipeline %s signs, but there is no signer", p.Name)
		}
	}
	return &Advancer{store: store, pub: pub, pipelines: pipelines, sign: signer, promote: promoter, log: o.log, metrics: o.metrics}, nil
}

// pipeline finds a configured pipeline by name.
func (a *Advancer) pipeline(name string) (types.Pipeline, bool) {
	for _, p := range a.pipelines {
		if p.Name == name {
			return p, true
		}
	}
	return types.Pipeline{}, false
}

// Next publishes the steps revision r is ready for; message ids make publishing them twice
// harmless. A merged revision with nothing left to do is marked promoted; a promoted one
// may still have releases to promote. A revision that is not merged, failed or conflicted,
// or of a pipeline no longer configured, has no next step.
func (a *Advancer) Next(ctx context.Context, r *types.Revision) error {
	if r == nil {
		return nil
	}
	p, ok := a.pipeline(r.Pipeline)
	if !ok {
		return nil
	}
	return a.next(ctx, p, r)
}

func (a *Advancer) next(ctx context.Context, p types.Pipeline, r *types.Revision) error {
	if !r.Advancing() {
		return nil
	}
	if p.Sign && !r.Signed {
		return a.publish(ctx, types.Step{Kind: types.StepSign, Pipeline: p.Name, Revision: r.Revision, Index: r.Index})
	}
	var errs []error
	left := 0
	for _, dest := range p.Promote {
		if r.Promotions[string(dest.To)].Done || r.Phase == types.PhasePromoted {
			continue
		}
		left++
		errs = append(errs, a.publish(ctx, types.Step{Kind: types.StepPromote, Pipeline: p.Name, Revision: r.Revision, Index: r.Index, Destination: string(dest.To)}))
	}
	errs = append(errs, a.publishReleases(ctx, p, r))
	if left == 0 && r.Phase != types.PhasePromoted {
		errs = append(errs, a.markPromoted(ctx, p, r))
	}
	return errors.Join(errs...)
}

// publishReleases publishes the release promotions r is ready for.
func (a *Advancer) publishReleases(ctx context.Context, p types.Pipeline, r *types.Revision) error {
	var errs []error
	for _, s := range r.ReleaseStepsLeft(p) {
		errs = append(errs, a.publish(ctx, s))
	}
	return errors.Join(errs...)
}

func (a *Advancer) publish(ctx context.Context, s types.Step) error {
	_, err := a.pub.Publish(ctx, types.SubjectSteps, s.MsgID(), s)
	return err
}

// HandleStep is the handler of types.SubjectSteps: it performs one step. A step that is
// moot (another index, a stopped or terminal revision, a destination removed from the
// configuration) is acknowledged and dropped; one of a pipeline that is not configured
// is types.ErrUnknownPipeline. A release's promote step (Tag set) also runs for a
// promoted revision.
func (a *Advancer) HandleStep(ctx context.Context, s types.Step) error {
	p, ok := a.pipeline(s.Pipeline)
	if !ok {
		return fmt.Errorf("%s step of %s: %w %q", s.Kind, s.Revision, types.ErrUnknownPipeline, s.Pipeline)
	}
	r, err := a.store.Get(ctx, s.Pipeline, s.Revision)
	if err != nil {
		return err
	}
	if r.Index != s.Index || !r.Advancing() {
		return nil
	}
	if s.Kind == types.StepPromote && s.Tag != "" {
		dest, ok := p.Destination(s.Destination)
		if !ok {
			a.log.Warn("dropping a release promotion to a destination no longer configured", "pipeline", p.Name, "revision", r.Revision, "destination", s.Destination, "tag", s.Tag)
			return nil
		}
		return a.promoteRelease(ctx, p, r, dest, s.Tag)
	}
	if r.Terminal() {
		return nil
	}
	switch s.Kind {
	case types.StepSign:
		if !r.Signed {
			if r, err = a.signRevision(ctx, p, r); err != nil {
				return err
			}
		}
		return a.next(ctx, p, r)
	case types.StepPromote:
		dest, ok := p.Destination(s.Destination)
		if !ok {
			a.log.Warn("dropping a promotion to a destination no longer configured", "pipeline", p.Name, "revision", r.Revision, "destination", s.Destination)
			return nil
		}
		if p.Sign && !r.Signed {
			return a.next(ctx, p, r) // signing first
		}
		if r.Promotions[string(dest.To)].Done {
			return a.next(ctx, p, r)
		}
		return a.promoteDestination(ctx, p, r, dest)
	}
	return fmt.Errorf("%w: unknown step %q", bus.ErrPermanent, s.Kind)
}

func (a *Advancer) signRevision(ctx context.Context, p types.Pipeline, r *types.Revision) (*types.Revision, error) {
	ref := p.Staging.Digest(r.Index)
	if _, err := a.sign.Sign(ctx, ref); err != nil {
		return nil, fmt.Errorf("signing %s: %w", ref, err)
	}
	a.log.Info("signed index and children", "pipeline", p.Name, "revision", r.Revision, "index", r.Index)
	return a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		return cur.MarkSigned(time.Now().UTC())
	})
}

// promoteDestination promotes one destination and records the outcome. A destination tag
// that points elsewhere is terminal for the revision (an operator must act); any other
// error is returned, to be retried.
func (a *Advancer) promoteDestination(ctx context.Context, p types.Pipeline, r *types.Revision, dest types.Destination) error {
	log := a.log.With("pipeline", p.Name, "revision", r.Revision, "destination", string(dest.To))
	src := p.Staging.Digest(r.Index)
	start := time.Now()
	digest, err := promoted(a.promote.Promote(ctx, src, []promote.Target{promote.DestinationTarget(dest, r.Revision)}))
	took := time.Since(start)
	conflict := errors.Is(err, types.ErrTagImmutable)
	if err != nil && !conflict {
		return fmt.Errorf("promoting %s to %s: %w", src, dest.To.Tag(r.Revision), err)
	}
	if conflict {
		// promote counted it in promoter_immutability_violations_total.
		log.Error("promotion refused: destination tag is immutable", "error", err)
	} else {
		log.Info("promoted", "digest", digest, "seconds", took.Seconds())
	}
	updated, all, uerr := state.Update(ctx, a.store, p.Name, r.Revision, func(cur *types.Revision) (bool, error) {
		now := time.Now().UTC()
		if conflict {
			return false, cur.PromotionConflicted(string(dest.To), err.Error(), now)
		}
		return cur.PromotedTo(string(dest.To), digest, now, took, p.Destinations())
	})
	if uerr != nil {
		return uerr
	}
	if all {
		log.Info("revision promoted to every destination", "destinations", len(p.Promote))
	}
	// The revision tag is there (unless it conflicted): the releases waiting for it follow.
	return a.publishReleases(ctx, p, updated)
}

// promoted is the digest the one target of a promotion points at, or its error.
func promoted(results []*promote.Result, errs []error) (string, error) {
	if errs[0] != nil {
		return "", errs[0]
	}
	return results[0].Digest, nil
}

// promoteRelease promotes release tag tag of r to dest and records the outcome: a tag that
// points elsewhere conflicts that release at dest (reported, never moved); any other error
// is returned, to be retried.
func (a *Advancer) promoteRelease(ctx context.Context, p types.Pipeline, r *types.Revision, dest types.Destination, tag string) error {
	to := string(dest.To)
	if _, requested := r.Releases[tag]; !requested || !r.Promotions[to].Done {
		// Published only once both are recorded: this read is behind them.
		return errStaleState
	}
	if pr := r.Releases[tag].Promotions[to]; pr.Done || pr.Conflicted {
		return nil
	}
	log := a.log.With("pipeline", p.Name, "revision", r.Revision, "destination", to, "tag", tag)
	src := p.Staging.Digest(r.Index)
	digest, err := promoted(a.promote.Promote(ctx, src, []promote.Target{promote.ReleaseTarget(dest, tag)}))
	conflict := errors.Is(err, types.ErrTagImmutable)
	if err != nil && !conflict {
		return fmt.Errorf("promoting release %s to %s: %w", src, dest.To.Tag(tag), err)
	}
	if conflict {
		log.Error("release refused: destination tag is immutable", "error", err)
	} else {
		log.Info("release promoted", "digest", digest)
	}
	_, uerr := a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		now := time.Now().UTC()
		if conflict {
			return cur.ReleaseConflicted(tag, to, err.Error(), now)
		}
		return cur.ReleasePromoted(tag, to, digest, now)
	})
	return uerr
}

// HandleRelease is the handler of types.SubjectReleaseTagged: it records a release tag on
// the revision of the commit it names, and hands the revision to Next, which promotes
// the release once the revision tag is at a destination. Nothing is built for it: a
// revision not built or merged yet (or never seen: the tag was pushed before its commit's
// branch push arrived) keeps the tag in its state until it is merged, signed and promoted
// as usual. A tag of a pipeline that is not configured is types.ErrUnknownPipeline.
func (a *Advancer) HandleRelease(ctx context.Context, ev types.ReleaseTagged) error {
	p, ok := a.pipeline(ev.Pipeline)
	if !ok {
		return fmt.Errorf("recording release %s of %s: %w %q", ev.Tag, ev.Revision, types.ErrUnknownPipeline, ev.Pipeline)
	}
	rev, err := a.store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
		return r.ReleaseRequested(ev.Tag, ev.Received)
	})
	if err != nil {
		return err
	}
	log := a.log.With("pipeline", p.Name, "revision", ev.Revision, "tag", ev.Tag, "phase", string(rev.Phase))
	switch {
	case rev.Releases[ev.Tag].Reason != "":
		log.Warn("release tag recorded, not promoted", "reason", rev.Releases[ev.Tag].Reason)
	case rev.Index == "":
		log.Info("release tag recorded; it is promoted once the revision is merged and promoted")
	default:
		log.Info("release tag recorded")
	}
	return a.next(ctx, p, rev)
}

// markPromoted ends a revision whose every destination is done (or that has none). r is
// the state the caller acted on: a read that does not hold its index yet is behind it (a
// JetStream follower answered) and is retried, never taken for "nothing to do".
func (a *Advancer) markPromoted(ctx context.Context, p types.Pipeline, r *types.Revision) error {
	_, err := a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		if cur.Index != r.Index {
			return errStaleState
		}
		return cur.Complete(p.Sign, p.Destinations(), time.Now().UTC())
	})
	return err
}

// errStaleState says a read of the revision state is older than a state already seen.
var errStaleState = errors.New("revision state read is behind the one acted on; reading it again")

// StepRetrying records a failed step's retry in the revision state, for status and
// operators, and counts it.
func (a *Advancer) StepRetrying(ctx context.Context, s types.Step, failures int, next time.Time, stepErr error) {
	a.metrics.StepRetries.WithLabelValues(string(s.Kind)).Inc()
	retry := types.Retry{Failures: failures, Error: stepErr.Error(), Next: next.UTC()}
	_, err := a.store.Update(ctx, s.Pipeline, s.Revision, func(cur *types.Revision) error {
		return cur.StepRetrying(s, retry, time.Now().UTC())
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("recording a step's retry", "pipeline", s.Pipeline, "revision", s.Revision, "step", s.Kind, "error", err)
	}
}

// Resume publishes the steps of every revision that has work left: on start, and at each
// reconcile. The bus normally holds them already (they are de-duplicated then); this covers
// a step lost between a state change and its publish.
func (a *Advancer) Resume(ctx context.Context, revs []*types.Revision) error {
	var errs []error
	for _, r := range revs {
		if r.Phase != types.PhaseMerged && r.Phase != types.PhaseSigned && (r.Phase != types.PhasePromoted || len(r.Releases) == 0) {
			continue
		}
		if err := a.Next(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", r.Pipeline, r.Revision, err))
		}
	}
	return errors.Join(errs...)
}
