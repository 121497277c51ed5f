package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// workers are the daemon's bus consumers and periodic jobs; they exist once the bus is
// ready, since the KV bucket they share is created then.
type workers struct {
	d          *daemon
	store      *state.Store
	merger     *merge.Merger
	advancer   *advancer
	dispatcher *builders.Dispatcher
}

// runWorkers runs the consumers, the reconciler and, for pipelines built with the local
// executor, an in-process builder agent, until ctx ends.
func (d *daemon) runWorkers(ctx context.Context) error {
	if err := d.bus.WaitReady(ctx); err != nil {
		return nil // stopped before the bus came up
	}
	kv, err := d.bus.Revisions()
	if err != nil {
		return err
	}
	store := state.New(kv)
	disp, err := builders.NewDispatcher(d.bus, d.o.registry, d.pipelines,
		builders.WithLogger(d.o.log), builders.WithMetrics(d.o.metrics))
	if err != nil {
		return err
	}
	merger, err := merge.New(store, d.o.registry, d.pipelines,
		merge.WithMetrics(d.o.metrics), merge.WithLogger(d.o.log), merge.WithOwner(d.instance))
	if err != nil {
		return err
	}
	w := &workers{
		d:      d,
		store:  store,
		merger: merger,
		advancer: &advancer{
			pipelines: d.pipelines, log: d.o.log, metrics: d.o.metrics, store: store, pub: d.bus,
			sign: d.steps.sign, promote: d.steps.promote,
		},
		dispatcher: disp,
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range []consumer{
		{durable: "daemon-registry", subject: types.SubjectRegistryPush, handle: decode(w.registryPush), parallel: 8, retrying: w.mergeRetrying,
			timeout: time.Minute}, // a merge reads manifests and configs and writes one index
		{durable: "daemon-source", subject: types.SubjectSourceChanged, handle: decode(w.sourceChanged), parallel: 4},
		{durable: "daemon-builds", subject: types.SubjectBuildResults, handle: decode(w.buildResult), parallel: 4},
		{durable: "daemon-steps", subject: types.SubjectSteps, handle: decode(w.advancer.handle), parallel: 16, retrying: w.stepRetrying,
			timeout: d.cfg.Promote.Timeout + time.Minute}, // a promotion is bounded by promote.timeout itself
	} {
		g.Go(func() error { return c.run(gctx, d.bus, d.o.log) })
	}
	g.Go(func() error { w.reconcileLoop(gctx); return nil })
	g.Go(func() error { w.gaugeLoop(gctx); return nil })
	if agent, err := d.localAgent(); err != nil {
		return err
	} else if agent != nil {
		g.Go(func() error { return agent.Run(gctx) })
	}
	return g.Wait()
}

// registryPush syncs the pushed revision with the registry and, once it is merged, queues
// its signing and promotion as steps of their own: a promotion can take minutes and must
// not hold up the merges of other revisions.
func (w *workers) registryPush(ctx context.Context, ev types.RegistryPush) error {
	rev, err := w.merger.HandlePush(ctx, ev)
	if err != nil {
		return err
	}
	return w.advance(ctx, rev)
}

// advance queues the steps of a merged revision.
func (w *workers) advance(ctx context.Context, rev *types.Revision) error {
	if rev == nil || rev.Index == "" {
		return nil
	}
	p, ok := w.d.pipeline(rev.Pipeline)
	if !ok {
		return nil
	}
	return w.advancer.next(ctx, p, rev)
}

// mergeRetrying records a failed merge's retry in the revision state. Waiting for another
// replica's lease is not a failure.
func (w *workers) mergeRetrying(ctx context.Context, data []byte, failures int, next time.Time, err error) {
	if errors.Is(err, merge.ErrInProgress) {
		return
	}
	var ev types.RegistryPush
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	w.d.o.metrics.StepRetries.WithLabelValues("merge").Inc()
	_, uerr := w.store.Update(ctx, ev.Pipeline, ev.Revision, func(r *types.Revision) error {
		if r.Index != "" || r.Phase == "" {
			return state.ErrNoChange
		}
		r.MergeRetry = types.Retry{Failures: failures, Error: err.Error(), Next: next.UTC()}
		return nil
	})
	if uerr != nil && ctx.Err() == nil {
		w.d.o.log.Warn("recording a merge retry", "pipeline", ev.Pipeline, "revision", ev.Revision, "error", uerr)
	}
}

func (w *workers) stepRetrying(ctx context.Context, data []byte, failures int, next time.Time, err error) {
	var s types.Step
	if json.Unmarshal(data, &s) == nil {
		w.advancer.retrying(ctx, s, failures, next, err)
	}
}

// sourceChanged dispatches one build per platform. Platforms whose arch tag already
// exists are not rebuilt and send no new notification, so the reconciler merges them.
func (w *workers) sourceChanged(ctx context.Context, ev types.SourceChanged) error {
	p, ok := w.d.pipeline(ev.Pipeline)
	if !ok {
		return fmt.Errorf("%w: pipeline %q is no longer configured", errPermanent, ev.Pipeline)
	}
	tags := p.ArchTags(ev.Revision)
	if _, err := w.store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
		return r.Dispatched(tags)
	}); err != nil {
		return err
	}
	queued, err := w.dispatcher.HandleSourceChanged(ctx, ev)
	if err != nil {
		return err
	}
	if len(queued) < len(p.Platforms) {
		// Some arch tags exist already and get no new notification: look at the registry.
		rev, err := w.merger.Sync(ctx, p, ev.Revision)
		if err != nil {
			return err
		}
		return w.advance(ctx, rev)
	}
	return nil
}

// buildResult records the outcome of a build attempt; a final failure fails the revision.
func (w *workers) buildResult(ctx context.Context, res types.BuildResult) error {
	req := res.Request
	_, err := w.store.Update(ctx, req.Pipeline, req.Revision, func(r *types.Revision) error {
		return r.RecordBuild(res)
	})
	if err == nil && res.Outcome == types.BuildFailed && res.Final {
		w.d.o.log.Error("build failed for good", "pipeline", req.Pipeline, "revision", req.Revision,
			"platform", req.Platform.String(), "job", res.Job, "attempts", res.Attempt, "reason", res.Reason)
	}
	return err
}

// reconcileLoop lists staging repositories and resumes unfinished revisions on start and
// every reconcileInterval: registries keep undelivered notifications only in memory, and a
// step that failed (a registry down) is retried here.
func (w *workers) reconcileLoop(ctx context.Context) {
	interval := w.d.cfg.ReconcileInterval // validated positive
	for {
		w.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (w *workers) reconcile(ctx context.Context) {
	for _, p := range w.d.pipelines {
		rep, err := w.merger.Reconcile(ctx, p)
		if err != nil && ctx.Err() == nil {
			w.d.o.log.Warn("reconciling", "pipeline", p.Name, "staging", p.Staging, "error", err)
		}
		w.d.o.log.Debug("reconciled", "pipeline", p.Name, "complete", rep.Complete, "merged_now", rep.Merged,
			"done", rep.Done, "conflicted", rep.Conflicted, "busy", rep.Busy, "unmerged", rep.Unmerged)
	}
	revs, err := w.store.List(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			w.d.o.log.Warn("listing revisions to resume", "error", err)
		}
		return
	}
	w.d.setPhaseGauge(revs)
	if err := w.advancer.resumeAll(ctx, revs); err != nil && ctx.Err() == nil {
		w.d.o.log.Warn("resuming revisions", "error", err)
	}
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

// gaugeInterval is how often promoter_revisions is recounted between reconciles: often
// enough for dashboards, cheap since it is one listing of the KV bucket.
const gaugeInterval = 15 * time.Second

func (w *workers) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(gaugeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if revs, err := w.store.List(ctx, ""); err == nil {
				w.d.setPhaseGauge(revs)
			}
		}
	}
}

// localAgent is the in-process builder agent of pipelines built with the local executor
// (development and `promoter dev`), or nil when there are none.
func (d *daemon) localAgent() (*builders.Agent, error) {
	var local []types.Pipeline
	platforms := map[string]types.Platform{}
	owner := map[string]string{}
	for _, p := range d.pipelines {
		if p.Build.Executor != "local" {
			continue
		}
		local = append(local, p)
		for _, pl := range p.Platforms {
			platforms[pl.String()] = pl
		}
	}
	if len(local) == 0 {
		return nil, nil
	}
	// The agent shares each platform's durable consumer with remote agents; a request of a
	// Kubernetes pipeline taken by this one could not be built, so refuse the mix.
	for _, p := range d.pipelines {
		if p.Build.Executor == "local" {
			continue
		}
		for _, pl := range p.Platforms {
			if _, ok := platforms[pl.String()]; ok {
				owner[pl.String()] = p.Name
			}
		}
	}
	for pl, name := range owner {
		return nil, fmt.Errorf("pipeline %s builds %s with Kubernetes while another pipeline builds it locally; one daemon cannot do both for one platform", name, pl)
	}
	exec, err := builders.NewLocal(d.o.registry, local, builders.WithLogger(d.o.log))
	if err != nil {
		return nil, err
	}
	var list []types.Platform
	for _, pl := range platforms {
		list = append(list, pl)
	}
	types.SortPlatforms(list)
	return builders.NewAgent(d.bus, exec, list,
		builders.WithLogger(d.o.log), builders.WithMetrics(d.o.metrics), builders.WithMaxAttempts(max(d.cfg.Builder.MaxAttempts, 1)))
}
