package builders

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/promoter-dev/promoter/internal/bus"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// Dispatcher turns source changes into build requests on the builds work queue.
type Dispatcher struct {
	pub       bus.Publisher
	reg       registry.Client
	pipelines map[string]types.Pipeline
	log       *slog.Logger
	metrics   *metrics.Metrics
}

// NewDispatcher dispatches builds of pipelines (validated configuration), publishing with
// pub and checking for existing arch tags with reg.
func NewDispatcher(pub bus.Publisher, reg registry.Client, pipelines []types.Pipeline, opts ...Option) (*Dispatcher, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{pub: pub, reg: reg, pipelines: map[string]types.Pipeline{}, log: o.log, metrics: o.metrics}
	for _, p := range pipelines {
		d.pipelines[p.Name] = p
	}
	return d, nil
}

// Requests are the build requests of one revision of pipeline p, one per platform in the
// pipeline's order, without looking at the registry; none for a merge-only pipeline.
func Requests(p types.Pipeline, revision string) []types.BuildRequest {
	if !p.Builds() {
		return nil
	}
	var reqs []types.BuildRequest
	for _, pl := range p.Platforms {
		req := types.BuildRequest{
			Pipeline:   p.Name,
			Revision:   revision,
			Platform:   pl,
			SourceRepo: p.Source.Repo,
			Context:    p.Build.Context,
			Dockerfile: p.Build.Dockerfile,
			Image:      p.Staging.Tag(p.ArchTag.Render(revision, pl)),
			GitSecret:  p.Build.GitSecret,
			Args:       p.Build.Args,
			Secrets:    p.Build.Secrets,
			Provenance: p.Build.Provenance,
		}
		if p.Build.Cache != "" {
			req.Cache = &types.BuildCache{Ref: p.Build.Cache.Render(p.Staging, pl), Mode: p.Build.CacheMode}
		}
		reqs = append(reqs, req)
	}
	return reqs
}

// HandleSourceChanged publishes one BuildRequest per platform of the event's pipeline on
// that platform's subject, with the request's MsgID as message id, so a redelivered
// webhook or a retried call never queues a build twice. A platform whose arch tag already
// exists in staging is not rebuilt. It returns the requests that are queued (published
// now or before, as a duplicate), not the skipped ones. On error some platforms may be
// queued already; calling it again is safe.
func (d *Dispatcher) HandleSourceChanged(ctx context.Context, ev types.SourceChanged) ([]types.BuildRequest, error) {
	p, ok := d.pipelines[ev.Pipeline]
	if !ok {
		return nil, fmt.Errorf("%w %q in source change %s", ErrUnknownPipeline, ev.Pipeline, ev.ID)
	}
	if !p.Builds() {
		return nil, fmt.Errorf("%w: pipeline %s has no source.repo: it only merges the arch tags CI pushes (source change %s)", ErrMergeOnly, p.Name, ev.ID)
	}
	if ev.Revision == "" {
		return nil, fmt.Errorf("source change %s for pipeline %s has no revision", ev.ID, ev.Pipeline)
	}
	var queued []types.BuildRequest
	for _, req := range Requests(p, ev.Revision) {
		platform := req.Platform.String()
		exists, err := d.exists(ctx, req.Image)
		if err != nil {
			return queued, err
		}
		if exists {
			d.metrics.BuildsDispatched.WithLabelValues(platform, "exists").Inc()
			d.log.Info("arch tag exists, not rebuilding", "pipeline", p.Name, "revision", ev.Revision, "platform", platform, "image", req.Image)
			continue
		}
		dup, err := d.pub.Publish(ctx, types.BuildSubject(req.Platform), req.MsgID(), req)
		if err != nil {
			return queued, fmt.Errorf("dispatching build %s: %w", req.MsgID(), err)
		}
		outcome := "dispatched"
		if dup {
			outcome = "duplicate"
		}
		d.metrics.BuildsDispatched.WithLabelValues(platform, outcome).Inc()
		d.log.Info("build "+outcome, "pipeline", p.Name, "revision", ev.Revision, "platform", platform, "image", req.Image)
		queued = append(queued, req)
	}
	return queued, nil
}

// exists reports whether image is in the registry; only "not found" counts as absent, any
// other failure is an error (the caller retries), so an unreachable registry never causes
// a rebuild of something that exists.
func (d *Dispatcher) exists(ctx context.Context, image string) (bool, error) {
	ref, err := d.reg.ParseReference(image)
	if err != nil {
		return false, fmt.Errorf("arch tag of pipeline: %w", err)
	}
	exists, err := d.reg.Exists(ctx, ref)
	if err == nil {
		return exists, nil
	}
	return false, fmt.Errorf("checking whether %s exists in %s: %w", ref, ref.Context().RegistryStr(), err)
}
