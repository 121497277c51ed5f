package builders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
		return nil, errors.New("builder agent: no platforms to build (set builder.platforms or --platforms)")
	}
	seen := map[string]bool{}
	for _, p := range platforms {
		if seen[p.String()] {
			return nil, fmt.Errorf("builder agent: platform %s listed twice", p)
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
// and its request handed back to the queue at once.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.bus.WaitReady(ctx); err != nil {
		return nil // stopped before the bus came up
	}
	// Every consumer first, so a failure leaves no worker running.
	consumers := make([]jetstream.Consumer, len(a.platforms))
	for i, p := range a.platforms {
		cons, err := a.bus.JS.CreateOrUpdateConsumer(ctx, bus.StreamBuilds, jetstream.ConsumerConfig{
			Durable:       ConsumerName(p),
			Description:   "builder agents for " + p.String(),
			FilterSubject: types.BuildSubject(p),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       a.o.ackWait,
			// One delivery more than attempts: it only reports a last attempt whose agent
			// died without a result (see handle), so every request ends in a Final result.
			MaxDeliver: a.o.maxAttempts + 1,
		})
		if err != nil {
			return fmt.Errorf("creating consumer %s on stream %s: %w", ConsumerName(p), bus.StreamBuilds, err)
		}
		consumers[i] = cons
	}
	var wg sync.WaitGroup
	for i, p := range a.platforms {
		a.o.log.Info("building", "platform", p.String(), "subject", types.BuildSubject(p), "consumer", ConsumerName(p))
		for range a.o.concurrency {
			wg.Go(func() { a.work(ctx, p, consumers[i]) })
		}
	}
	wg.Wait()
	return nil
}

// work takes one request at a time until ctx ends.
func (a *Agent) work(ctx context.Context, p types.Platform, cons jetstream.Consumer) {
	log := a.o.log.With("platform", p.String())
	for ctx.Err() == nil {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// An idle queue ends a fetch with a timeout: fetch again.
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
				log.Warn("fetching build requests", "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		a.handle(ctx, p, msg, log)
	}
}

// handle runs one delivery of a request: delivery n is attempt n.
func (a *Agent) handle(ctx context.Context, p types.Platform, msg jetstream.Msg, log *slog.Logger) {
	var req types.BuildRequest
	if err := json.Unmarshal(msg.Data(), &req); err != nil {
		log.Error("dropping malformed build request", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	attempt := 1
	if meta, err := msg.Metadata(); err == nil {
		attempt = int(meta.NumDelivered)
	}
	log = log.With("pipeline", req.Pipeline, "revision", req.Revision, "attempt", attempt)
	stop := bus.Heartbeat(msg, a.o.ackWait)
	defer stop()

	res := types.BuildResult{Request: req, Attempt: attempt}
	if attempt > a.o.maxAttempts {
		// The last attempt's agent stopped (or could not report) without a result.
		res.Outcome, res.Final = types.BuildFailed, true
		res.Reason = fmt.Sprintf("gave up after %d attempts: attempt %d ended without a result (its builder agent stopped or lost the bus)",
			a.o.maxAttempts, attempt-1)
		a.finish(ctx, msg, res, log)
		return
	}

	start := time.Now()
	built, err := a.exec.Build(ctx, req, attempt)
	res.Job, res.Duration = built.Job, time.Since(start)
	if ctx.Err() != nil {
		// Shutting down: hand the request back now rather than after AckWait.
		log.Info("build abandoned on shutdown; request returned to the queue", "job", built.Job)
		_ = msg.Nak()
		return
	}
	switch {
	case err == nil:
		res.Outcome, res.Final, res.Digest = types.BuildSucceeded, true, built.Digest
	case errors.Is(err, ErrPermanent) || attempt >= a.o.maxAttempts:
		res.Outcome, res.Final = types.BuildFailed, true
		res.Reason = err.Error()
		if attempt >= a.o.maxAttempts && !errors.Is(err, ErrPermanent) {
			res.Reason = fmt.Sprintf("gave up after %d attempts: %v", attempt, err)
		}
	default:
		res.Outcome, res.Reason = types.BuildFailed, err.Error()
	}
	a.finish(ctx, msg, res, log)
}

// finish publishes the result, then acknowledges, retries or terminates the request.
func (a *Agent) finish(ctx context.Context, msg jetstream.Msg, res types.BuildResult, log *slog.Logger) {
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
		if err := msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
			log.Warn("acknowledging build request", "error", err)
		}
	case pubErr != nil:
		// Without the result the daemon would wait forever: retry, so that the next
		// delivery reports (again, or as the lost last attempt).
		log.Error("publishing build result; retrying the request", "error", pubErr)
		_ = msg.NakWithDelay(a.retryDelay(res.Attempt))
	case res.Final:
		log.Error("build failed for good", "job", res.Job, "reason", res.Reason)
		_ = msg.Term()
	default:
		delay := a.retryDelay(res.Attempt)
		log.Warn("build failed, will retry", "job", res.Job, "reason", res.Reason, "retry_in", delay)
		_ = msg.NakWithDelay(delay)
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

// retryDelay is the wait before the attempt after attempt: retryDelay doubled per
// failed attempt, at most maxRetryDelay, jittered so that the builds of one failing push
// do not all come back at once.
func (a *Agent) retryDelay(attempt int) time.Duration {
	return backoff.Policy{Min: a.o.retryDelay, Max: maxRetryDelay, Jitter: true}.Delay(attempt - 1)
}
