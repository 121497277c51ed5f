package builders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// Dispatcher turns source changes into build requests on the builds work queue.
type Dispatcher struct {
	pub       bus.Publisher
	reg       registry.Client
	pipelines map[string]types.Pipeline
	records   Records
	policies  map[string]Policy
	log       *slog.Logger
	metrics   *metrics.Metrics
}

// Records reads what promoter recorded of a revision (state.Store): the dispatcher trusts
// an existing arch tag only when it holds what promoter's own build reported.
type Records interface {
	Get(ctx context.Context, pipeline, revision string) (*types.Revision, error)
}

// Policy checks an image ("repo@sha256:...") against a pipeline's verify policy
// (sign.Policy); a refusal wraps types.ErrUntrusted.
type Policy interface {
	Verify(ctx context.Context, ref string) (types.Evidence, error)
}

// NewDispatcher dispatches builds of pipelines (validated configuration), publishing with
// pub and checking for existing arch tags with reg.
func NewDispatcher(pub bus.Publisher, reg registry.Client, pipelines []types.Pipeline, opts ...Option) (*Dispatcher, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{pub: pub, reg: reg, pipelines: map[string]types.Pipeline{}, records: o.records, policies: o.policies,
		log: o.log, metrics: o.metrics}
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
// holds an image promoter can vouch for (vouched) is not rebuilt. It returns the requests that are queued (published
// now or before, as a duplicate), not the skipped ones. On error some platforms may be
// queued already; calling it again is safe.
func (d *Dispatcher) HandleSourceChanged(ctx context.Context, ev types.SourceChanged) ([]types.BuildRequest, error) {
	p, ok := d.pipelines[ev.Pipeline]
	if !ok {
		return nil, fmt.Errorf("dispatching source change %s: %w %q", ev.ID, ErrUnknownPipeline, ev.Pipeline)
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
		vouched, err := d.vouched(ctx, p, req)
		if err != nil {
			return queued, err
		}
		if vouched != "" {
			d.metrics.BuildsDispatched.WithLabelValues(platform, "exists").Inc()
			d.log.Info("arch tag exists, not rebuilding", "pipeline", p.Name, "revision", ev.Revision, "platform", platform,
				"image", req.Image, "evidence", vouched)
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

// Syncer reads a revision's arch tags from the registry and merges what is complete
// (merge.Merger.Sync).
type Syncer interface {
	Sync(ctx context.Context, p types.Pipeline, revision string) (*types.Revision, error)
}

// Next queues what follows once a revision's state changed (advance.Advancer.Next).
type Next interface {
	Next(ctx context.Context, r *types.Revision) error
}

// SourceHandler is the handler of types.SubjectSourceChanged: it records in store that
// the revision's builds are dispatched (types.Revision.Dispatched), dispatches one build
// per platform (HandleSourceChanged), and, when some arch tags exist already (they are not
// rebuilt, and send no new notification), syncs the revision with the registry through
// merger and hands it to next. A change of a pipeline that is not configured is
// types.ErrUnknownPipeline. A merge-only pipeline (no source) builds nothing: its change
// is dropped for good (bus.ErrPermanent), the revision left alone for the arch tags CI
// pushes. Source webhooks never match such a pipeline; this is an event stored before the
// configuration dropped the pipeline's source.
func (d *Dispatcher) SourceHandler(store *state.Store, merger Syncer, next Next) func(context.Context, types.SourceChanged) error {
	return func(ctx context.Context, ev types.SourceChanged) error {
		p, ok := d.pipelines[ev.Pipeline]
		if !ok {
			return fmt.Errorf("dispatching source change %s: %w %q", ev.ID, types.ErrUnknownPipeline, ev.Pipeline)
		}
		if !p.Builds() {
			return fmt.Errorf("%w: %w: pipeline %q has no source.repo: it only merges the arch tags CI pushes, and builds nothing", bus.ErrPermanent, ErrMergeOnly, ev.Pipeline)
		}
		if _, err := store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
			return r.Dispatched(p.ArchTags(ev.Revision), ev.Received)
		}); err != nil {
			return err
		}
		queued, err := d.HandleSourceChanged(ctx, ev)
		if err != nil || len(queued) == len(p.Platforms) {
			return err
		}
		// Some arch tags exist already and get no new notification: look at the registry.
		rev, err := merger.Sync(ctx, p, ev.Revision)
		if err != nil {
			return err
		}
		return next.Next(ctx, rev)
	}
}

// vouched says why the arch tag of req need not be built again, or "" when it must be:
// it is absent, or it holds an image promoter cannot vouch for. An image is vouched for
// when the revision's state records promoter's own build of exactly that digest, or when
// the pipeline's verify policy accepts it. Anything else under the tag (an image pushed
// there by someone else) is built over, so that the merge gets promoter's build. Only "not
// found" counts as absent and only a policy's refusal as untrusted; any other failure is
// an error (the caller retries), so an unreachable registry never causes a rebuild.
func (d *Dispatcher) vouched(ctx context.Context, p types.Pipeline, req types.BuildRequest) (string, error) {
	ref, err := d.reg.ParseReference(req.Image)
	if err != nil {
		return "", fmt.Errorf("arch tag of pipeline: %w", err)
	}
	digest, err := d.reg.Resolve(ctx, ref)
	switch {
	case err != nil:
		return "", fmt.Errorf("checking whether %s exists in %s: %w", ref, ref.Context().RegistryStr(), err)
	case digest == "":
		return "", nil
	}
	if d.records != nil {
		rev, err := d.records.Get(ctx, p.Name, req.Revision)
		switch {
		case err == nil:
			if ps := rev.Platforms[req.Platform.String()]; ps.Build == types.BuildSucceeded && ps.BuildDigest == digest {
				return fmt.Sprintf("promoter built %s (job %s)", digest, ps.Job), nil
			}
		case !errors.Is(err, state.ErrNotFound):
			return "", fmt.Errorf("reading the state of %s/%s: %w", p.Name, req.Revision, err)
		}
	}
	if policy, ok := d.policies[p.Name]; ok {
		ev, err := policy.Verify(ctx, p.Staging.Digest(digest))
		switch {
		case err == nil:
			return ev.String(), nil
		case !errors.Is(err, types.ErrUntrusted):
			return "", fmt.Errorf("verifying %s: %w", req.Image, err)
		}
		d.log.Info("arch tag holds an image no signer of the policy signed; building over it", "image", req.Image, "digest", digest, "reason", err.Error())
		return "", nil
	}
	d.log.Info("arch tag holds an image promoter did not build; building over it", "image", req.Image, "digest", digest)
	return "", nil
}
