package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/config"
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
	// advancing tracks advance calls started by handlers, so shutdown waits for them.
	advancing sync.WaitGroup
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
	disp, err := builders.NewDispatcher(d.bus, d.o.registry, d.cfg.Pipelines,
		builders.WithLogger(d.o.log), builders.WithMetrics(d.o.metrics))
	if err != nil {
		return err
	}
	w := &workers{
		d:     d,
		store: store,
		merger: &merge.Merger{
			Config: d.cfg, Store: store, Registry: d.o.registry, Metrics: d.o.metrics, Logger: d.o.log,
		},
		advancer: &advancer{
			d: d, store: store, sign: d.steps.sign, promote: d.steps.promote, running: map[string]bool{},
		},
		dispatcher: disp,
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range []consumer{
		{durable: "daemon-registry", subject: types.SubjectRegistryPush, handle: decode(w.registryPush)},
		{durable: "daemon-source", subject: types.SubjectSourceChanged, handle: decode(w.sourceChanged)},
		{durable: "daemon-builds", subject: types.SubjectBuildResults, handle: decode(w.buildResult)},
	} {
		g.Go(func() error { return c.run(gctx, d) })
	}
	g.Go(func() error { w.reconcileLoop(gctx); return nil })
	g.Go(func() error { w.gaugeLoop(gctx); return nil })
	if agent, err := d.localAgent(); err != nil {
		return err
	} else if agent != nil {
		g.Go(func() error { return agent.Run(gctx) })
	}
	err = g.Wait()
	w.advancing.Wait()
	return err
}

// registryPush records an arch-tag push, merges a complete revision, then signs and
// promotes it in the background: a promotion can take minutes and must not hold up the
// merges of other revisions.
func (w *workers) registryPush(ctx context.Context, ev types.RegistryPush) error {
	rev, err := w.merger.HandlePush(ctx, ev)
	if err != nil {
		return err
	}
	if rev != nil && rev.Phase == types.PhaseMerged {
		w.advanceLater(ctx, rev.Pipeline, rev.Revision)
	}
	return nil
}

func (w *workers) advanceLater(ctx context.Context, pipeline, revision string) {
	w.advancing.Add(1)
	go func() {
		defer w.advancing.Done()
		if err := w.advancer.advance(ctx, pipeline, revision); err != nil && ctx.Err() == nil {
			// resumeAll retries it on the next reconcile.
			w.d.o.log.Warn("advancing revision", "pipeline", pipeline, "revision", revision, "error", err)
		}
	}()
}

// sourceChanged dispatches one build per platform. Platforms whose arch tag already
// exists are not rebuilt and send no new notification, so the reconciler merges them.
func (w *workers) sourceChanged(ctx context.Context, ev types.SourceChanged) error {
	p, ok := w.d.cfg.Pipeline(ev.Pipeline)
	if !ok {
		return fmt.Errorf("%w: pipeline %q is no longer configured", errPermanent, ev.Pipeline)
	}
	if _, err := w.store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
		if r.Phase != "" {
			return state.ErrNoChange
		}
		for _, pl := range p.PlatformList() {
			r.Platforms[pl.String()] = types.PlatformState{Tag: types.ArchTag(p.ArchTag).Render(ev.Revision, pl)}
		}
		r.Phase = types.PhaseBuilding
		return nil
	}); err != nil {
		return err
	}
	queued, err := w.dispatcher.HandleSourceChanged(ctx, ev)
	if err != nil {
		return err
	}
	if len(queued) < len(p.Platforms) {
		return w.merger.Reconcile(ctx, p)
	}
	return nil
}

// buildResult records the outcome of a build attempt; a final failure fails the revision.
func (w *workers) buildResult(ctx context.Context, res types.BuildResult) error {
	req := res.Request
	_, err := w.store.Update(ctx, req.Pipeline, req.Revision, func(r *types.Revision) error {
		key := req.Platform.String()
		ps := r.Platforms[key]
		if ps.Build == res.Outcome && ps.BuildReason == res.Reason && !(res.Final && r.Phase != types.PhaseFailed) {
			return state.ErrNoChange
		}
		ps.Build, ps.BuildReason = res.Outcome, res.Reason
		if ps.Tag == "" {
			ps.Tag = req.Image
		}
		r.Platforms[key] = ps
		if res.Outcome == types.BuildFailed && res.Final && r.Index == "" {
			r.Phase = types.PhaseFailed
			r.Reason = fmt.Sprintf("build of %s failed after %d attempts (job %s): %s", key, res.Attempt, res.Job, res.Reason)
		}
		return nil
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
	interval := w.d.cfg.ReconcileInterval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
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
	for _, p := range w.d.cfg.Pipelines {
		if err := w.merger.Reconcile(ctx, p); err != nil && ctx.Err() == nil {
			w.d.o.log.Warn("reconciling", "pipeline", p.Name, "staging", p.Staging, "error", err)
		}
	}
	if err := w.advancer.resumeAll(ctx); err != nil && ctx.Err() == nil {
		w.d.o.log.Warn("resuming revisions", "error", err)
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
	var local []config.Pipeline
	platforms := map[string]types.Platform{}
	owner := map[string]string{}
	for _, p := range d.cfg.Pipelines {
		if p.Build.Executor != "local" {
			continue
		}
		local = append(local, p)
		for _, pl := range p.PlatformList() {
			platforms[pl.String()] = pl
		}
	}
	if len(local) == 0 {
		return nil, nil
	}
	// The agent shares each platform's durable consumer with remote agents; a request of a
	// Kubernetes pipeline taken by this one could not be built, so refuse the mix.
	for _, p := range d.cfg.Pipelines {
		if p.Build.Executor == "local" {
			continue
		}
		for _, pl := range p.PlatformList() {
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
