package builders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/promoter-dev/promoter/internal/backoff"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/types"
)

// maxRetryDelay bounds the delay between two attempts of a failed build.
const maxRetryDelay = 5 * time.Minute

// Agent consumes the build requests of its platforms and runs them with an Executor.
type Agent struct {
	bus       *bus.Bus
	exec      Executor
	platforms []types.Platform
	o         *options
}

// NewAgent builds the requests of platforms with exec. Several agents may serve the same
// platform: they share its durable consumer, and each request goes to one of them.
func NewAgent(b *bus.Bus, exec Executor, platforms []types.Platform, opts ...Option) (*Agent, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(platforms) == 0 {
		return nil, fmt.Errorf("%w (set builder.platforms or --platforms)", ErrNoPlatforms)
	}
	seen := map[string]bool{}
	for _, p := range platforms {
		if seen[p.String()] {
			return nil, fmt.Errorf("%w: %s", ErrPlatformTwice, p)
		}
		seen[p.String()] = true
	}
	return &Agent{bus: b, exec: exec, platforms: platforms, o: o}, nil
}

// ConsumerName is the durable consumer of platform p's build requests on the builds
// stream; every agent building p shares it.
func ConsumerName(p types.Platform) string {
	return "builder-" + strings.ReplaceAll(p.Token(), ".", "-")
}

// Run consumes until ctx ends. A build still running then is abandoned (its Job deleted)
// and its request handed back to the queue at once. It fails when a platform's consumer
// cannot be created, before any build starts.
func (a *Agent) Run(ctx context.Context) error {
	consumers := make([]bus.Consumer, len(a.platforms))
	for i, p := range a.platforms {
		consumers[i] = a.consumer(p)
		a.o.log.Info("building", "platform", p.String(), "subject", types.BuildSubject(p), "consumer", ConsumerName(p))
	}
	return a.bus.Consume(ctx, consumers...)
}

// consumer is platform p's share of the builds work queue: a build runs as long as it
// heartbeats, a failed one comes back after a growing delay, each delivery being the next
// attempt.
func (a *Agent) consumer(p types.Platform) bus.Consumer {
	return bus.Consumer{
		WorkQueue:   true,
		Durable:     ConsumerName(p),
		Description: "builder agents for " + p.String(),
		Subject:     types.BuildSubject(p),
		Handle:      bus.DecodeAttempt(a.handle),
		Parallel:    a.o.concurrency,
		Timeout:     bus.NoTimeout, // the Job has its own deadline
		AckWait:     a.o.ackWait,
		// One delivery more than attempts: it only reports a last attempt whose agent
		// died without a result (see handle), so every request ends in a Final result.
		MaxDeliver: a.o.maxAttempts + 1,
		Retry:      backoff.Policy{Min: a.o.retryDelay, Max: maxRetryDelay, Jitter: true},
	}
}

// handle runs one delivery of a request: delivery n is attempt n. It returns nil once the
// image is pushed, an error wrapping bus.ErrPermanent once the request failed for good,
// and another error to have the request delivered again as the next attempt.
func (a *Agent) handle(ctx context.Context, req types.BuildRequest, attempt int) error {
	log := a.o.log.With("platform", req.Platform.String(), "pipeline", req.Pipeline, "revision", req.Revision, "attempt", attempt)
	res := types.BuildResult{Request: req, Attempt: attempt}
	if attempt > a.o.maxAttempts {
		// The last attempt's agent stopped (or could not report) without a result.
		res.Outcome, res.Final = types.BuildFailed, true
		res.Reason = fmt.Sprintf("gave up after %d attempts: attempt %d ended without a result (its builder agent stopped or lost the bus)",
			a.o.maxAttempts, attempt-1)
		return a.finish(ctx, res, log)
	}

	start := time.Now()
	built, err := a.exec.Build(ctx, req, attempt)
	res.Job, res.Duration = built.Job, time.Since(start)
	if ctx.Err() != nil {
		// Shutting down: the bus hands the request back now rather than after AckWait.
		log.Info("build abandoned on shutdown; request returned to the queue", "job", built.Job)
		return fmt.Errorf("building %s: abandoned on shutdown: %w", req.Image, ctx.Err())
	}
	switch {
	case err == nil:
		res.Outcome, res.Final, res.Digest = types.BuildSucceeded, true, built.Digest
	case errors.Is(err, bus.ErrPermanent) || attempt >= a.o.maxAttempts:
		res.Outcome, res.Final = types.BuildFailed, true
		res.Reason = err.Error()
		if attempt >= a.o.maxAttempts && !errors.Is(err, bus.ErrPermanent) {
			res.Reason = fmt.Sprintf("gave up after %d attempts: %v", attempt, err)
		}
	default:
		res.Outcome, res.Reason = types.BuildFailed, err.Error()
	}
	return a.finish(ctx, res, log)
}

// finish publishes the result, and says what becomes of the request: acknowledged (nil),
// terminated (bus.ErrPermanent) or retried (another error).
func (a *Agent) finish(ctx context.Context, res types.BuildResult, log *slog.Logger) error {
	platform := res.Request.Platform.String()
	outcome := string(res.Outcome)
	if res.Outcome == types.BuildFailed && res.Final {
		outcome = "gave_up"
	}
	a.o.metrics.Builds.WithLabelValues(platform, outcome).Inc()
	pubErr := a.publish(ctx, res)
	switch {
	case res.Outcome == types.BuildSucceeded:
		// The image is pushed: its registry notification tells the daemon even when the
		// result could not be published, so a rebuild would only waste time.
		if pubErr != nil {
			log.Error("publishing build result", "error", pubErr)
		}
		log.Info("build succeeded", "job", res.Job, "image", res.Request.Image, "digest", res.Digest, "duration", res.Duration)
		return nil
	case pubErr != nil:
		// Without the result the daemon would wait forever: retry, so that the next
		// delivery reports (again, or as the lost last attempt).
		log.Error("publishing build result; retrying the request", "error", pubErr)
		return fmt.Errorf("publishing the result of attempt %d: %w", res.Attempt, pubErr)
	case res.Final:
		log.Error("build failed for good", "job", res.Job, "reason", res.Reason)
		return fmt.Errorf("%w: build of %s failed for good", bus.ErrPermanent, res.Request.Image)
	default:
		log.Warn("build failed, will retry", "job", res.Job, "reason", res.Reason)
		// The reason only, not the error: the retry schedule is the agent's (WithRetryDelay),
		// whatever the failure asked for.
		return fmt.Errorf("build attempt %d of %s: %s", res.Attempt, res.Request.Image, res.Reason)
	}
}

// publish stores the result with message id "<request msg id>/<attempt>", trying a few
// times over about half a minute (the request's heartbeat keeps running meanwhile).
func (a *Agent) publish(ctx context.Context, res types.BuildResult) error {
	id := res.Request.MsgID() + "/" + strconv.Itoa(res.Attempt)
	policy := backoff.Policy{Min: time.Second, Max: 16 * time.Second, Jitter: true}
	var err error
	for try := 0; try < 5; try++ {
		if _, err = a.bus.Publish(ctx, types.SubjectBuildResults, id, res); err == nil {
			return nil
		}
		if backoff.Sleep(ctx, policy.Delay(try)) != nil {
			return err
		}
	}
	return err
}
