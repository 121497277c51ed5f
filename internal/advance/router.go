package advance

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// mergeTimeout bounds one registry push's handling: a merge reads manifests and configs and
// writes one index.
const mergeTimeout = time.Minute

// Router is the table of the daemon's bus consumers: each subject, its durable consumer
// and the handler of the domain package that owns it. A registry push goes to the merger
// (merge.Merger.PushHandler), a source change to the build dispatcher
// (builders.Dispatcher.SourceHandler), a build result to the merger
// (merge.Merger.BuildResultHandler), a release tag and a step to the advancer
// (Advancer.HandleRelease, HandleStep). The router itself does no work: it decodes each
// message once, and drops a message of a pipeline that is not configured
// (types.ErrUnknownPipeline) with a log line and a count, whichever subject it came on.
type Router struct {
	adv     *Advancer
	merger  *merge.Merger
	disp    *builders.Dispatcher
	store   *state.Store
	log     *slog.Logger
	metrics *metrics.Metrics
}

// NewRouter routes to adv, merger and disp, which share store and the pipelines.
func NewRouter(store *state.Store, adv *Advancer, merger *merge.Merger, disp *builders.Dispatcher, opts ...Option) (*Router, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if store == nil || adv == nil || merger == nil || disp == nil {
		return nil, errors.New("advance: a router needs a state store, an advancer, a merger and a dispatcher")
	}
	return &Router{adv: adv, merger: merger, disp: disp, store: store, log: o.log, metrics: o.metrics}, nil
}

// Consumers are the bus consumers of the daemon's subjects, each with its handler, its
// parallelism and its timeout. stepTimeout bounds a sign or promote step (a promotion is
// bounded by promote.timeout itself, so give it more).
func (rt *Router) Consumers(stepTimeout time.Duration) []bus.Consumer {
	registry := route(rt, types.SubjectRegistryPush, rt.merger.PushHandler(rt.adv), rt.merger.PushRetrying)
	// Pushes of one revision are handled in order, one at a time (each reads the registry
	// and records what it holds; two at once only race for the state); pushes of other
	// revisions and pipelines go on meanwhile.
	registry.Durable, registry.Parallel, registry.Timeout = "daemon-registry", 8, mergeTimeout
	registry.Parse = bus.ParseJSON(revisionKey) // decoded once, for its order and its handler

	source := route(rt, types.SubjectSourceChanged, rt.disp.SourceHandler(rt.store, rt.merger, rt.adv), nil)
	source.Durable, source.Parallel = "daemon-source", 4

	builds := route(rt, types.SubjectBuildResults, rt.merger.BuildResultHandler(rt.adv), nil)
	builds.Durable, builds.Parallel, builds.Timeout = "daemon-builds", 4, mergeTimeout

	releases := route(rt, types.SubjectReleaseTagged, rt.adv.HandleRelease, nil)
	releases.Durable, releases.Parallel = "daemon-releases", 4

	steps := route(rt, types.SubjectSteps, rt.adv.HandleStep, rt.adv.StepRetrying)
	steps.Durable, steps.Parallel, steps.Timeout = "daemon-steps", 16, stepTimeout

	return []bus.Consumer{registry, source, builds, releases, steps}
}

// route is the consumer of subject: each message is decoded once as T and handled by
// handle. A message that is not JSON of T is dropped (bus.ErrPermanent), one of a
// pipeline that is not configured is acknowledged with a log line and a count. retrying,
// when set, is told of each failure the bus will retry, with the message as decoded.
func route[T any](rt *Router, subject string, handle func(context.Context, T) error,
	retrying func(ctx context.Context, msg T, failures int, next time.Time, err error),
) bus.Consumer {
	c := bus.Consumer{Subject: subject, Handle: bus.Decode(func(ctx context.Context, msg T) error {
		err := handle(ctx, msg)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, types.ErrUnknownPipeline):
			rt.metrics.UnknownPipeline.WithLabelValues(subject).Inc()
			rt.log.Warn("dropping a message of a pipeline that is not configured", "subject", subject, "error", err)
			return nil
		}
		return &failed[T]{msg: msg, err: err}
	})}
	if retrying != nil {
		c.Retrying = func(ctx context.Context, _ []byte, failures int, next time.Time, err error) {
			if f, ok := errors.AsType[*failed[T]](err); ok {
				retrying(ctx, f.msg, failures, next, f.err)
			}
		}
	}
	return c
}

// failed is a handler's error with the message it failed on, so that the retry hook
// need not decode the message again. It is the error it wraps for everything else.
type failed[T any] struct {
	msg T
	err error
}

func (f *failed[T]) Error() string { return f.err.Error() }
func (f *failed[T]) Unwrap() error { return f.err }

// revisionKey is the revision a registry push is about, for its order; "" (no order) for
// a push without one, which its handler refuses.
func revisionKey(p types.RegistryPush) string {
	if p.Revision == "" {
		return ""
	}
	return p.Pipeline + "/" + p.Revision
}
