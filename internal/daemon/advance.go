package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// The steps after a merge, as the daemon needs them. Implementations live in internal/sign
// and internal/promote; adapters in steps.go.
type (
	signStep interface {
		// Sign signs ref (an index by digest) and its platform children.
		Sign(ctx context.Context, ref string) error
	}
	promoteStep interface {
		// Promote copies src (by digest) with signatures and referrers to dst (a tag
		// reference) and returns the digest dst points at.
		Promote(ctx context.Context, src, dst string, d types.Destination) (string, error)
	}
)

// advancer moves merged revisions through signing and promotion. Each step is a message on
// types.SubjectSteps: the bus redelivers a failed one on its own schedule (retryDelay), so a
// failing destination is retried within seconds, not at the next reconcile, and a restart
// keeps the schedule. Each step records its outcome in the revision state before its
// message is acknowledged, and publishes the steps that follow it, so a crash between the
// two only repeats a step, which is idempotent: signing does not pile up signatures and
// promotion skips what exists.
type advancer struct {
	pipelines []types.Pipeline
	log       *slog.Logger
	metrics   *metrics.Metrics
	store     *state.Store
	pub       events.Publisher
	sign      signStep
	promote   promoteStep
}

// next publishes the steps revision r is ready for; message ids make publishing them twice
// harmless. A revision with nothing left to do but no destination is marked promoted.
func (a *advancer) next(ctx context.Context, p types.Pipeline, r *types.Revision) error {
	if r.Index == "" || r.Terminal() {
		return nil
	}
	if p.Sign && !r.Signed {
		return a.publish(ctx, types.Step{Kind: types.StepSign, Pipeline: p.Name, Revision: r.Revision, Index: r.Index})
	}
	var errs []error
	left := 0
	for _, dest := range p.Promote {
		if r.Promotions[string(dest.To)].Done {
			continue
		}
		left++
		errs = append(errs, a.publish(ctx, types.Step{Kind: types.StepPromote, Pipeline: p.Name, Revision: r.Revision, Index: r.Index, Destination: string(dest.To)}))
	}
	if left == 0 {
		return a.markPromoted(ctx, p, r)
	}
	return errors.Join(errs...)
}

func (a *advancer) publish(ctx context.Context, s types.Step) error {
	_, err := a.pub.Publish(ctx, types.SubjectSteps, s.MsgID(), s)
	return err
}

// handle performs one step. A step that is moot (another index, a terminal revision, a
// pipeline or destination removed from the configuration) is acknowledged and dropped.
func (a *advancer) handle(ctx context.Context, s types.Step) error {
	p, ok := pipelineNamed(a.pipelines, s.Pipeline)
	if !ok {
		a.log.Warn("dropping a step of a pipeline no longer configured", "pipeline", s.Pipeline, "revision", s.Revision)
		return nil
	}
	r, err := a.store.Get(ctx, s.Pipeline, s.Revision)
	if err != nil {
		return err
	}
	if r.Index != s.Index || r.Terminal() {
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
	return fmt.Errorf("%w: unknown step %q", errPermanent, s.Kind)
}

func (a *advancer) signRevision(ctx context.Context, p types.Pipeline, r *types.Revision) (*types.Revision, error) {
	log := a.log.With("pipeline", p.Name, "revision", r.Revision, "index", r.Index)
	ref := p.Staging.Digest(r.Index)
	if err := a.sign.Sign(ctx, ref); err != nil {
		return nil, fmt.Errorf("signing %s: %w", ref, err)
	}
	log.Info("signed index and children")
	return a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		return cur.MarkSigned()
	})
}

// promoteDestination promotes one destination and records the outcome. A destination tag
// that points elsewhere is terminal for the revision (an operator must act); any other
// error is returned, to be retried.
func (a *advancer) promoteDestination(ctx context.Context, p types.Pipeline, r *types.Revision, dest types.Destination) error {
	log := a.log.With("pipeline", p.Name, "revision", r.Revision, "destination", string(dest.To))
	src := p.Staging.Digest(r.Index)
	dst := dest.To.Tag(r.Revision)
	start := time.Now()
	digest, err := a.promote.Promote(ctx, src, dst, dest)
	conflict := errors.Is(err, types.ErrTagImmutable)
	if err != nil && !conflict {
		return fmt.Errorf("promoting %s to %s: %w", src, dst, err)
	}
	if conflict {
		// promote counted it in promoter_immutability_violations_total.
		log.Error("promotion refused: destination tag is immutable", "error", err)
	} else {
		log.Info("promoted", "digest", digest, "seconds", time.Since(start).Seconds())
	}
	all := false
	_, uerr := a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		now := time.Now().UTC()
		if conflict {
			return cur.PromotionConflicted(string(dest.To), err.Error(), now)
		}
		var perr error
		all, perr = cur.PromotedTo(string(dest.To), digest, now, p.Destinations())
		return perr
	})
	if uerr == nil && all {
		log.Info("revision promoted to every destination", "destinations", len(p.Promote))
	}
	return uerr
}

// markPromoted ends a revision whose every destination is done (or that has none). r is
// the state the caller acted on: a read that does not hold its index yet is behind it (a
// JetStream follower answered) and is retried, never taken for "nothing to do".
func (a *advancer) markPromoted(ctx context.Context, p types.Pipeline, r *types.Revision) error {
	_, err := a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		if cur.Index != r.Index {
			return errStaleState
		}
		return cur.Complete(p.Sign, p.Destinations())
	})
	return err
}

// errStaleState says a read of the revision state is older than a state already seen.
var errStaleState = errors.New("revision state read is behind the one acted on; reading it again")

// retrying records a failed step's retry in the revision state, for status and operators,
// and counts it.
func (a *advancer) retrying(ctx context.Context, s types.Step, failures int, next time.Time, stepErr error) {
	a.metrics.StepRetries.WithLabelValues(string(s.Kind)).Inc()
	retry := types.Retry{Failures: failures, Error: stepErr.Error(), Next: next.UTC()}
	_, err := a.store.Update(ctx, s.Pipeline, s.Revision, func(cur *types.Revision) error {
		if cur.Index != s.Index {
			return state.ErrNoChange
		}
		switch s.Kind {
		case types.StepSign:
			cur.SignRetry = retry
		case types.StepPromote:
			if cur.Promotions == nil {
				cur.Promotions = map[string]types.Promotion{}
			}
			pr := cur.Promotions[s.Destination]
			pr.Error, pr.At, pr.Retry = stepErr.Error(), time.Now().UTC(), retry
			cur.Promotions[s.Destination] = pr
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("recording a step's retry", "pipeline", s.Pipeline, "revision", s.Revision, "step", s.Kind, "error", err)
	}
}

// resumeAll publishes the steps of every revision that has work left: on start, and at each
// reconcile. The bus normally holds them already (they are de-duplicated then); this covers
// a step lost between a state change and its publish.
func (a *advancer) resumeAll(ctx context.Context, revs []*types.Revision) error {
	var errs []error
	for _, r := range revs {
		if r.Phase != types.PhaseMerged && r.Phase != types.PhaseSigned {
			continue
		}
		p, ok := pipelineNamed(a.pipelines, r.Pipeline)
		if !ok {
			continue
		}
		if err := a.next(ctx, p, r); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", r.Pipeline, r.Revision, err))
		}
	}
	return errors.Join(errs...)
}
