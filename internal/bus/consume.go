package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/backoff"
)

// ackWait is how long a message may stay unacknowledged before redelivery. Handlers signal
// progress every ackWait/3, so a long merge or promotion is not redelivered while it runs,
// but the messages of a replica that died are redelivered within ackWait.
const ackWait = 10 * time.Second

// retryPolicy schedules the redelivery of a message whose handler failed: from about 1 s,
// doubling with jitter, up to a minute between attempts.
var retryPolicy = backoff.Policy{Min: time.Second, Max: time.Minute, Jitter: true}

// maxRetryAfter caps how long an error may ask a retry to wait (a registry's Retry-After).
const maxRetryAfter = 10 * time.Minute

// defaultHandlerTimeout bounds a handler call whose consumer sets no timeout.
const defaultHandlerTimeout = 2 * time.Minute

// ErrPermanent marks a handler error that redelivery cannot fix (a malformed message); the
// message is terminated instead of retried.
var ErrPermanent = errors.New("permanent")

// Handler handles one message's data. An error wrapping ErrPermanent drops the message; any
// other error has it redelivered later.
type Handler func(ctx context.Context, data []byte) error

// Consumer is one durable pull consumer of the events stream and its handler.
type Consumer struct {
	Durable string
	Subject string
	Handle  Handler
	// Parallel bounds the messages handled at once; default 1.
	Parallel int
	// Key, when set, names what a message is about (a revision): messages with the same
	// key are handled one at a time, in the order they arrived, while messages with other
	// keys go on in parallel. "" means no order.
	Key func(data []byte) string
	// Timeout bounds one handler call (default defaultHandlerTimeout): a handler stuck on a
	// dead connection must not keep its message in progress forever.
	Timeout time.Duration
	// Retrying, when set, is told of each failure that will be retried: failures so far,
	// when the next attempt is due, and the error.
	Retrying func(ctx context.Context, data []byte, failures int, next time.Time, err error)
}

// Decode wraps a typed handler: the message is JSON of T, and one that is not is dropped.
func Decode[T any](fn func(context.Context, T) error) Handler {
	return func(ctx context.Context, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("%w: decoding %T: %v", ErrPermanent, v, err)
		}
		return fn(ctx, v)
	}
}

// Consume runs c until ctx ends, and returns nil then. Replicas share the durable consumer,
// so each message goes to one of them. A failed handler's message is redelivered on
// retryDelay's schedule; the handler signals progress (Heartbeat) while it runs.
func (b *Bus) Consume(ctx context.Context, c Consumer) error {
	if err := b.WaitReady(ctx); err != nil {
		return nil // stopping before the bus came up
	}
	parallel := max(c.Parallel, 1)
	log := b.log.With("consumer", c.Durable)
	var cons jetstream.Consumer
	for attempt := 0; ; attempt++ {
		var err error
		cons, err = b.JS.CreateOrUpdateConsumer(ctx, StreamEvents, jetstream.ConsumerConfig{
			Durable:       c.Durable,
			FilterSubject: c.Subject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1,
			MaxAckPending: max(64, 4*parallel),
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		// NATS restarting or a cluster electing a leader: keep trying, the daemon reports
		// not ready meanwhile.
		wait := retryPolicy.Delay(attempt)
		log.Warn("creating consumer, will retry", "error", err, "retry_in", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
	slots := make(chan struct{}, parallel)
	var inflight sync.WaitGroup
	order := newKeyOrder()
	handle := func(msg jetstream.Msg) {
		key := ""
		if c.Key != nil {
			key = c.Key(msg.Data())
		}
		if !order.start(key, msg) {
			return // queued behind the message of the same key being handled
		}
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-slots; inflight.Done() }()
			for next := msg; next != nil; next = order.next(key) {
				c.handleMsg(ctx, next, log)
			}
		}()
	}
	// nats.go (v1.55, nats-io/nats.go#2063) sends no new pull request after a consumer
	// leadership change, and the consumer stalls with messages pending: start a new
	// Consume then. TestNATSClusterLosesANode caught the steps consumer stalled for 2 min.
	restart := make(chan struct{}, 1)
	onErr := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() != nil {
			return
		}
		log.Debug("consume", "error", err)
		if errors.Is(err, jetstream.ErrConsumerLeadershipChanged) {
			select {
			case restart <- struct{}{}:
			default:
			}
		}
	})
	for attempt := 0; ; {
		cc, err := cons.Consume(handle, jetstream.PullMaxMessages(max(8, parallel)), onErr)
		if err != nil {
			wait := retryPolicy.Delay(attempt)
			attempt++
			log.Warn("consuming, will retry", "error", err, "retry_in", wait)
			if backoff.Sleep(ctx, wait) != nil {
				inflight.Wait()
				return nil
			}
			continue
		}
		attempt = 0
		select {
		case <-ctx.Done():
			cc.Drain()
			<-cc.Closed()
			inflight.Wait()
			return nil
		case <-restart:
			log.Info("consumer leadership changed; pulling again")
			cc.Drain()
			<-cc.Closed()
		}
	}
}

func (c Consumer) handleMsg(ctx context.Context, msg jetstream.Msg, log *slog.Logger) {
	// Keep the message ours while the handler works.
	stop := Heartbeat(msg, ackWait)
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultHandlerTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	err := c.Handle(hctx, msg.Data())
	cancel()
	stop()
	switch {
	case err == nil:
		actx, cancel := context.WithTimeout(ctx, ackWait)
		if err := msg.DoubleAck(actx); err != nil && ctx.Err() == nil {
			// Redelivered later; every handler is idempotent.
			log.Warn("acknowledging", "error", err)
		}
		cancel()
	case errors.Is(err, ErrPermanent):
		log.Error("dropping malformed message", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
	case ctx.Err() != nil:
		// Shutting down: let another replica (or this one after restart) take it now.
		_ = msg.NakWithDelay(0)
	default:
		failures := 1
		if meta, _ := msg.Metadata(); meta != nil {
			failures = int(meta.NumDelivered)
		}
		delay := retryDelay(failures, err)
		if c.Retrying != nil {
			c.Retrying(ctx, msg.Data(), failures, time.Now().Add(delay), err)
		}
		log.Warn("handler failed, will retry", "subject", msg.Subject(), "failures", failures, "retry_in", delay, "error", err)
		_ = msg.NakWithDelay(delay)
	}
}

// retryDelay is the wait before the next attempt after the given number of failures:
// exponential with jitter from about a second up to a minute, and never less than the error
// asks for (a registry's Retry-After, the expiry of another replica's lease).
func retryDelay(failures int, err error) time.Duration {
	d := retryPolicy.Delay(max(failures-1, 0))
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		d = max(d, min(ra.RetryAfter(), maxRetryAfter))
	}
	return d
}

// keyOrder keeps the messages of one key in line: the first is handled, the others wait
// their turn, acknowledged as in progress meanwhile so that JetStream does not redeliver
// them while they wait.
type keyOrder struct {
	mu     sync.Mutex
	queued map[string][]waiting
}

type waiting struct {
	msg  jetstream.Msg
	stop func() // ends the heartbeat that keeps it ours while it waits
}

func newKeyOrder() *keyOrder { return &keyOrder{queued: map[string][]waiting{}} }

// start reports whether msg may be handled now; if not, it waits behind the message of
// its key being handled. The empty key is never ordered.
func (o *keyOrder) start(key string, msg jetstream.Msg) bool {
	if key == "" {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	q, busy := o.queued[key]
	if !busy {
		o.queued[key] = nil
		return true
	}
	o.queued[key] = append(q, waiting{msg: msg, stop: Heartbeat(msg, ackWait)})
	return false
}

// next is key's next waiting message, or nil when none waits: the key is free then.
func (o *keyOrder) next(key string) jetstream.Msg {
	if key == "" {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queued[key]
	if len(q) == 0 {
		delete(o.queued, key)
		return nil
	}
	o.queued[key] = q[1:]
	q[0].stop()
	return q[0].msg
}
