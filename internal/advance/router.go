package advance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// mergeTimeout bounds one registry push's handling: a merge reads manifests and configs and
// writes one index.
const mergeTimeout = time.Minute

// Router is where each message the daemon consumes goes: a registry push to the merger, a
// source change to the build dispatcher, a build result and a release tag to the revision
// state, a step to the advancer. A revision the merger finished, or one that got a release
// tag, is handed to the advancer.
type Router struct {
	adv     *Advancer
	merger  *merge.Merger
	disp    *builders.Dispatcher
	log     *slog.Logger
	metrics *metrics.Metrics
}

// NewRouter routes to adv, merger and disp; they share adv's store and pipelines.
func NewRouter(adv *Advancer, merger *merge.Merger, disp *builders.Dispatcher, opts ...Option) (*Router, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if adv == nil || merger == nil || disp == nil {
		return nil, errors.New("advance: a router needs an advancer, a merger and a dispatcher")
	}
	return &Router{adv: adv, merger: merger, disp: disp, log: o.log, metrics: o.metrics}, nil
}

// Consumers are the bus consumers of the daemon's subjects, each with its handler, its
// parallelism and its timeout. stepTimeout bounds a sign or promote step (a promotion is
// bounded by promote.timeout itself, so give it more).
func (rt *Router) Consumers(stepTimeout time.Duration) []bus.Consumer {
	return []bus.Consumer{
		// Pushes of one revision are handled in order, one at a time (each reads the registry
		// and records what it holds; two at once only race for the state); pushes of other
		// revisions and pipelines go on meanwhile.
		{Durable: "daemon-registry", Subject: types.SubjectRegistryPush, Handle: bus.Decode(rt.RegistryPush),
			Parallel: 8, Key: revisionKey, Retrying: rt.mergeRetrying, Timeout: mergeTimeout},
		{Durable: "daemon-source", Subject: types.SubjectSourceChanged, Handle: bus.Decode(rt.SourceChanged), Parallel: 4},
		{Durable: "daemon-builds", Subject: types.SubjectBuildResults, Handle: bus.Decode(rt.BuildResult), Parallel: 4, Timeout: mergeTimeout},
		{Durable: "daemon-releases", Subject: types.SubjectReleaseTagged, Handle: bus.Decode(rt.ReleaseTagged), Parallel: 4},
		{Durable: "daemon-steps", Subject: types.SubjectSteps, Handle: bus.Decode(rt.adv.HandleStep),
			Parallel: 16, Retrying: rt.stepRetrying, Timeout: stepTimeout},
	}
}

// revisionKey is the revision a message is about, for bus.Consumer.Key.
func revisionKey(data []byte) string {
	var ev struct {
		Pipeline string `json:"pipeline"`
		Revision string `json:"revision"`
	}
	if json.Unmarshal(data, &ev) != nil || ev.Revision == "" {
		return "" // malformed: its handler drops it
	}
	return ev.Pipeline + "/" + ev.Revision
}

// RegistryPush syncs the pushed revision with the registry and, once it is merged, queues
// its signing and promotion as steps of their own: a promotion can take minutes and must
// not hold up the merges of other revisions.
func (rt *Router) RegistryPush(ctx context.Context, ev types.RegistryPush) error {
	rev, err := rt.merger.HandlePush(ctx, ev)
	if err != nil {
		return err
	}
	return rt.adv.Next(ctx, rev)
}

// SourceChanged dispatches one build per platform. Platforms whose arch tag already exists
// are not rebuilt and send no new notification, so it merges them from the registry. A
// merge-only pipeline (no source) builds nothing: its change is dropped, the revision left
// alone for the arch tags CI pushes. Source webhooks never match such a pipeline; this is
// an event stored before the configuration dropped the pipeline's source.
func (rt *Router) SourceChanged(ctx context.Context, ev types.SourceChanged) error {
	p, ok := rt.adv.pipeline(ev.Pipeline)
	if !ok {
		return fmt.Errorf("%w: pipeline %q is no longer configured", bus.ErrPermanent, ev.Pipeline)
	}
	if !p.Builds() {
		return fmt.Errorf("%w: pipeline %q has no source.repo: it only merges the arch tags CI pushes, and builds nothing", bus.ErrPermanent, ev.Pipeline)
	}
	tags := p.ArchTags(ev.Revision)
	if _, err := rt.adv.store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
		return r.Dispatched(tags, ev.Received)
	}); err != nil {
		return err
	}
	queued, err := rt.disp.HandleSourceChanged(ctx, ev)
	if err != nil {
		return err
	}
	if len(queued) < len(p.Platforms) {
		// Some arch tags exist already and get no new notification: look at the registry.
		rev, err := rt.merger.Sync(ctx, p, ev.Revision)
		if err != nil {
			return err
		}
		return rt.adv.Next(ctx, rev)
	}
	return nil
}

// BuildResult records the outcome of a build attempt; a final failure fails the revision.
// A success is the evidence the merge waits for (the digest the build pushed), so the
// revision is synced with the registry then: its arch tag's notification may have come
// first and found nothing to vouch for it.
func (rt *Router) BuildResult(ctx context.Context, res types.BuildResult) error {
	req := res.Request
	_, err := rt.adv.store.Update(ctx, req.Pipeline, req.Revision, func(r *types.Revision) error {
		return r.RecordBuild(res, time.Now().UTC())
	})
	if err != nil {
		return err
	}
	if res.Outcome == types.BuildFailed && res.Final {
		rt.log.Error("build failed for good", "pipeline", req.Pipeline, "revision", req.Revision,
			"platform", req.Platform.String(), "job", res.Job, "attempts", res.Attempt, "reason", res.Reason)
	}
	p, ok := rt.adv.pipeline(req.Pipeline)
	if res.Outcome != types.BuildSucceeded || !ok {
		return nil
	}
	rev, err := rt.merger.Sync(ctx, p, req.Revision)
	if err != nil {
		return err
	}
	return rt.adv.Next(ctx, rev)
}

// ReleaseTagged records a release tag on the revision of the commit it names, and hands the
// revision to the advancer, which promotes the release once the revision tag is at a
// destination. Nothing is built for it: a revision not built or merged yet (or never seen:
// the tag was pushed before its commit's branch push arrived) keeps the tag in its state
// until it is merged, signed and promoted as usual.
func (rt *Router) ReleaseTagged(ctx context.Context, ev types.ReleaseTagged) error {
	p, ok := rt.adv.pipeline(ev.Pipeline)
	if !ok {
		return fmt.Errorf("%w: pipeline %q is no longer configured", bus.ErrPermanent, ev.Pipeline)
	}
	rev, err := rt.adv.store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
		return r.ReleaseRequested(ev.Tag, ev.Received)
	})
	if err != nil {
		return err
	}
	log := rt.log.With("pipeline", p.Name, "revision", ev.Revision, "tag", ev.Tag, "phase", string(rev.Phase))
	switch {
	case rev.Releases[ev.Tag].Reason != "":
		log.Warn("release tag recorded, not promoted", "reason", rev.Releases[ev.Tag].Reason)
	case rev.Index == "":
		log.Info("release tag recorded; it is promoted once the revision is merged and promoted")
	default:
		log.Info("release tag recorded")
	}
	return rt.adv.Next(ctx, rev)
}

// mergeRetrying records a failed merge's retry in the revision state. Waiting for another
// replica's lease is not a failure.
func (rt *Router) mergeRetrying(ctx context.Context, data []byte, failures int, next time.Time, err error) {
	if errors.Is(err, merge.ErrInProgress) {
		return
	}
	var ev types.RegistryPush
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	rt.metrics.StepRetries.WithLabelValues("merge").Inc()
	retry := types.Retry{Failures: failures, Error: err.Error(), Next: next.UTC()}
	_, uerr := rt.adv.store.Update(ctx, ev.Pipeline, ev.Revision, func(r *types.Revision) error {
		return r.MergeRetrying(retry)
	})
	if uerr != nil && ctx.Err() == nil {
		rt.log.Warn("recording a merge retry", "pipeline", ev.Pipeline, "revision", ev.Revision, "error", uerr)
	}
}

func (rt *Router) stepRetrying(ctx context.Context, data []byte, failures int, next time.Time, err error) {
	var s types.Step
	if json.Unmarshal(data, &s) == nil {
		rt.adv.StepRetrying(ctx, s, failures, next, err)
	}
}
