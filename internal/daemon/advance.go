package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/promoter-dev/promoter/internal/config"
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
		Promote(ctx context.Context, src, dst string, d config.Destination) (string, error)
	}
)

// errConflict marks a promotion refused because a destination tag points elsewhere.
var errConflict = errors.New("conflict")

// advancer moves merged revisions through signing and promotion, recording each step in
// the revision state so a restarted daemon resumes where it stopped.
type advancer struct {
	d       *daemon
	store   *state.Store
	sign    signStep
	promote promoteStep

	mu      sync.Mutex
	running map[string]bool
}

// advance does whatever is left for one revision. It is safe to call repeatedly and from
// several replicas: signing does not pile up signatures and promotion skips what exists.
func (a *advancer) advance(ctx context.Context, pipeline, revision string) error {
	key := state.Key(pipeline, revision)
	a.mu.Lock()
	if a.running[key] {
		a.mu.Unlock()
		return nil // this replica is already on it
	}
	a.running[key] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, key)
		a.mu.Unlock()
	}()

	p, ok := a.d.cfg.Pipeline(pipeline)
	if !ok {
		return nil // pipeline removed from the configuration since
	}
	r, err := a.store.Get(ctx, pipeline, revision)
	if err != nil {
		return err
	}
	if r.Phase == types.PhaseMerged && p.Sign && !r.Signed {
		if r, err = a.signRevision(ctx, p, r); err != nil {
			return err
		}
	}
	if r.Phase == types.PhaseSigned || (r.Phase == types.PhaseMerged && !p.Sign) {
		return a.promoteRevision(ctx, p, r)
	}
	return nil
}

func (a *advancer) signRevision(ctx context.Context, p config.Pipeline, r *types.Revision) (*types.Revision, error) {
	log := a.d.o.log.With("pipeline", p.Name, "revision", r.Revision, "index", r.Index)
	ref := types.Repository(p.Staging).Digest(r.Index)
	if err := a.sign.Sign(ctx, ref); err != nil {
		log.Warn("signing failed, will retry", "error", err)
		return nil, fmt.Errorf("signing %s: %w", ref, err)
	}
	log.Info("signed index and children")
	return a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		if cur.Signed {
			return state.ErrNoChange
		}
		cur.Signed = true
		if cur.Phase == types.PhaseMerged {
			cur.Phase = types.PhaseSigned
		}
		return nil
	})
}

func (a *advancer) promoteRevision(ctx context.Context, p config.Pipeline, r *types.Revision) error {
	src := types.Repository(p.Staging).Digest(r.Index)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		errs      []error
		conflicts int
	)
	// Destinations are independent: promote them in parallel, each recording its own
	// result, so a slow or failing registry does not hold up the others.
	for _, dest := range p.Promote {
		if pr, ok := r.Promotions[dest.To]; ok && pr.Done {
			continue // finished before a restart, or by another replica
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conflict, err := a.promoteDestination(ctx, p, r.Revision, src, dest)
			mu.Lock()
			defer mu.Unlock()
			if conflict {
				conflicts++
			} else if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if conflicts > 0 {
		return nil // terminal: an operator must act
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, err := a.store.Update(ctx, p.Name, r.Revision, func(cur *types.Revision) error {
		for _, dest := range p.Promote {
			if !cur.Promotions[dest.To].Done {
				return state.ErrNoChange
			}
		}
		if cur.Phase == types.PhasePromoted || cur.Phase == types.PhaseConflicted {
			return state.ErrNoChange
		}
		cur.Phase, cur.Reason = types.PhasePromoted, ""
		return nil
	})
	if err == nil {
		a.d.o.log.Info("revision promoted to every destination", "pipeline", p.Name, "revision", r.Revision, "destinations", len(p.Promote))
	}
	return err
}

// promoteDestination promotes one destination and records the outcome in the revision.
// conflict reports a destination tag that points elsewhere: terminal for the revision.
func (a *advancer) promoteDestination(ctx context.Context, p config.Pipeline, revision, src string, dest config.Destination) (conflict bool, err error) {
	log := a.d.o.log.With("pipeline", p.Name, "revision", revision, "destination", dest.To)
	dst := types.Repository(dest.To).Tag(revision)
	start := time.Now()
	digest, err := a.promote.Promote(ctx, src, dst, dest)
	conflict = errors.Is(err, errConflict)
	switch {
	case conflict:
		// promote counted it in promoter_immutability_violations_total.
		log.Error("promotion refused: destination tag is immutable", "error", err)
	case err != nil:
		log.Warn("promotion failed, will retry", "error", err)
	default:
		log.Info("promoted", "digest", digest, "seconds", time.Since(start).Seconds())
	}
	_, uerr := a.store.Update(ctx, p.Name, revision, func(cur *types.Revision) error {
		if cur.Promotions == nil {
			cur.Promotions = map[string]types.Promotion{}
		}
		now := time.Now().UTC()
		switch {
		case conflict:
			cur.Promotions[dest.To] = types.Promotion{Error: err.Error(), At: now}
			cur.Phase, cur.Reason = types.PhaseConflicted, err.Error()
		case err != nil:
			cur.Promotions[dest.To] = types.Promotion{Error: err.Error(), At: now}
		default:
			cur.Promotions[dest.To] = types.Promotion{Done: true, Digest: digest, At: now}
		}
		return nil
	})
	if err == nil || conflict {
		return conflict, uerr
	}
	return false, fmt.Errorf("promoting %s to %s: %w", src, dst, err)
}

// resumeAll advances every revision that has work left: on start (a previous process may
// have crashed mid-promotion) and periodically (a failed step is retried).
func (a *advancer) resumeAll(ctx context.Context) error {
	revs, err := a.store.List(ctx, "")
	if err != nil {
		return err
	}
	a.d.setPhaseGauge(revs)
	var errs []error
	for _, r := range revs {
		if r.Phase == types.PhaseMerged || r.Phase == types.PhaseSigned {
			if err := a.advance(ctx, r.Pipeline, r.Revision); err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", r.Pipeline, r.Revision, err))
			}
		}
	}
	return errors.Join(errs...)
}

// setPhaseGauge sets promoter_revisions{state} from a listing of every revision.
func (d *daemon) setPhaseGauge(revs []*types.Revision) {
	counts := map[types.Phase]int{}
	for _, r := range revs {
		counts[r.Phase]++
	}
	for _, ph := range types.Phases {
		d.o.metrics.Revisions.WithLabelValues(string(ph)).Set(float64(counts[ph]))
	}
}
