package advance

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// DefaultReconcileInterval is how often a Reconciler runs when WithInterval is not given
// (config reconcileInterval).
const DefaultReconcileInterval = 5 * time.Minute

// gaugeInterval is how often promoter_revisions is recounted between reconciles: often
// enough for dashboards, cheap since it is one listing of the KV bucket.
const gaugeInterval = 15 * time.Second

// Reconciler lists the staging repositories and resumes unfinished revisions on start and
// every interval: registries keep undelivered notifications only in memory, and a step
// that failed (a registry down) is retried here. It also keeps promoter_revisions{state}
// and promoter_revisions_idle_seconds{state}.
type Reconciler struct {
	adv      *Advancer
	merger   *merge.Merger
	interval time.Duration
	log      *slog.Logger
	metrics  *metrics.Metrics
}

// NewReconciler reconciles adv's pipelines through merger.
func NewReconciler(adv *Advancer, merger *merge.Merger, opts ...Option) (*Reconciler, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if adv == nil || merger == nil {
		return nil, errors.New("advance: a reconciler needs an advancer and a merger")
	}
	return &Reconciler{adv: adv, merger: merger, interval: o.interval, log: o.log, metrics: o.metrics}, nil
}

// Run reconciles now and every interval, and recounts the revisions per phase every
// gaugeInterval, until ctx ends. A failed pass is logged and tried again at the next.
func (rc *Reconciler) Run(ctx context.Context) error {
	next := time.Now()
	gauge := time.NewTicker(gaugeInterval)
	defer gauge.Stop()
	for {
		if !time.Now().Before(next) {
			rc.Reconcile(ctx)
			next = time.Now().Add(rc.interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		case <-gauge.C:
			if revs, err := rc.adv.store.List(ctx, ""); err == nil {
				rc.setPhaseGauge(revs, time.Now())
			}
		}
	}
}

// Reconcile runs one pass: every pipeline's staging repository, then every revision with
// steps left.
func (rc *Reconciler) Reconcile(ctx context.Context) {
	for _, p := range rc.adv.pipelines {
		rep, err := rc.merger.Reconcile(ctx, p)
		if err != nil && ctx.Err() == nil {
			rc.log.Warn("reconciling", "pipeline", p.Name, "staging", p.Staging, "error", err)
		}
		rc.log.Debug("reconciled", "pipeline", p.Name, "complete", rep.Complete, "merged_now", rep.Merged,
			"done", rep.Done, "conflicted", rep.Conflicted, "busy", rep.Busy, "unmerged", rep.Unmerged)
	}
	revs, err := rc.adv.store.List(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			rc.log.Warn("listing revisions to resume", "error", err)
		}
		return
	}
	rc.setPhaseGauge(revs, time.Now())
	if err := rc.adv.Resume(ctx, revs); err != nil && ctx.Err() == nil {
		rc.log.Warn("resuming revisions", "error", err)
	}
}

// setPhaseGauge sets promoter_revisions{state} and promoter_revisions_idle_seconds{state}
// (of the unfinished phases) from a listing of every revision, at now.
func (rc *Reconciler) setPhaseGauge(revs []*types.Revision, now time.Time) {
	counts := map[types.Phase]int{}
	oldest := map[types.Phase]time.Time{}
	for _, r := range revs {
		counts[r.Phase]++
		if o, ok := oldest[r.Phase]; !ok || r.Updated.Before(o) {
			oldest[r.Phase] = r.Updated
		}
	}
	for _, ph := range types.Phases {
		rc.metrics.Revisions.WithLabelValues(string(ph)).Set(float64(counts[ph]))
		if (&types.Revision{Phase: ph}).Terminal() {
			continue
		}
		var idle float64
		if o, ok := oldest[ph]; ok {
			idle = max(now.Sub(o).Seconds(), 0)
		}
		rc.metrics.RevisionsIdle.WithLabelValues(string(ph)).Set(idle)
	}
}
