package bus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/backoff"
)

// ackWait is the default of Consumer.AckWait: how long a message may stay unacknowledged
// before redelivery. Handlers signal progress every ackWait/3, so a long merge or promotion
// is not redelivered while it runs, but the messages of a replica that died are redelivered
// within ackWait.
const ackWait = 10 * time.Second

// retryPolicy is the default of Consumer.Retry: the redelivery of a message whose handler
// failed, from about 1 s, doubling with jitter, up to a minute between attempts.
var retryPolicy = backoff.Policy{Min: time.Second, Max: time.Minute, Jitter: true}

// maxRetryAfter caps how long an error may ask a retry to wait (a registry's Retry-After).
const maxRetryAfter = 10 * time.Minute

// defaultHandlerTimeout bounds a handler call whose consumer sets no timeout.
const defaultHandlerTimeout = 2 * time.Minute

// NoTimeout as Consumer.Timeout lets a handler run as long as it heartbeats: a build Job
// carries its own deadline.
const NoTimeout time.Duration = -1

// Delivery is one delivery of a message to its handler.
type Delivery struct {
	Data []byte
	// Value is the message as the consumer's Parse decoded it, nil without one.
	Value any
	// Attempt counts the deliveries of the message from 1: a redelivery after a failure,
	// after a replica stopped or after an acknowledgement was lost is the next attempt.
	Attempt int
}

// Handler handles one delivery. An error wrapping ErrPermanent terminates the message; any
// other error has it redelivered on the consumer's Retry schedule.
type Handler func(ctx context.Context, d Delivery) error

// Consumer is one durable pull consumer and its handler. The zero values suit the events
// stream; the builder agent sets WorkQueue and the knobs below it for the builds stream.
type Consumer struct {
	Durable string
	Subject string
	Handle  Handler
	// Parallel bounds the messages handled at once; default 1.
	Parallel int
	// Parse, when set, decodes each message once, before it is handled: the value is the
	// handler's Delivery.Value, and the key names what the message is about (a revision).
	// Messages with the same key are handled one at a time, in the order they arrived,
	// while messages with other keys go on in parallel; "" means no order. A message
	// Parse refuses is terminated. See ParseJSON.
	Parse Parser
	// Timeout bounds one handler call (default defaultHandlerTimeout; NoTimeout, or any
	// negative value, for none): a handler stuck on a dead connection must not keep its
	// message in progress forever.
	Timeout time.Duration
	// Retrying, when set, is told of each failure that will be retried: failures so far,
	// when the next attempt is due, and the error.
	Retrying func(ctx context.Context, data []byte, failures int, next time.Time, err error)

	// WorkQueue consumes the builds work queue (StreamBuilds) instead of the events stream.
	// Such a stream refuses a consumer whose subject overlaps another's, which no retry
	// mends, so Consume returns a failure to create it instead of retrying; and the
	// replicas sharing it may take as many messages at once as they have handlers.
	WorkQueue bool
	// Description is the consumer's description on the server; default none.
	Description string
	// AckWait is how long a message may go without an acknowledgement or a heartbeat
	// before it is redelivered, to this replica or another; the handler heartbeats every
	// third of it. The default is ackWait (10s).
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of a message; the default, 0, is unbounded.
	MaxDeliver int
	// Retry schedules the redelivery of a failed message by its number of failures; the
	// default, the zero Policy, is retryPolicy.
	Retry backoff.Policy
}

// ErrPermanent marks an error that redelivery cannot fix: a malformed message, a message
// naming a pipeline that is not configured, a build that no other attempt can mend (a Job
// template that does not render). Consume terminates the message; the builder agent
// reports a final failed build first.
var ErrPermanent = errors.New("permanent")

// Parser decodes a message once, for its handler and for its order (Consumer.Parse).
type Parser func(data []byte) (value any, key string, err error)

// ParseJSON is the Parser of messages that are JSON of T, ordered by key (nil for no
// order). A message that is not JSON of T is refused, so it is terminated.
func ParseJSON[T any](key func(T) string) Parser {
	return func(data []byte) (any, string, error) {
		v, err := decodeJSON[T](data)
		if err != nil || key == nil {
			return v, "", err
		}
		return v, key(v), nil
	}
}

// Decode wraps a typed handler: the message is JSON of T, and one that is not is dropped.
// A value the consumer's ParseJSON[T] decoded already is not decoded again.
func Decode[T any](fn func(context.Context, T) error) Handler {
	return DecodeAttempt(func(ctx context.Context, v T, _ int) error { return fn(ctx, v) })
}

// DecodeAttempt is Decode for a handler that needs the delivery's attempt number.
func DecodeAttempt[T any](fn func(ctx context.Context, v T, attempt int) error) Handler {
	return func(ctx context.Context, d Delivery) error {
		v, ok := d.Value.(T)
		if !ok {
			var err error
			if v, err = decodeJSON[T](d.Data); err != nil {
				return err
			}
		}
		return fn(ctx, v, d.Attempt)
	}
}

// decodeJSON is data as T; an error is permanent, since redelivery brings the same bytes.
func decodeJSON[T any](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: decoding %T: %v", ErrPermanent, v, err)
	}
	return v, nil
}

// Consume runs cs until ctx ends, and returns nil then. It creates every durable consumer
// before it takes a message, so a work-queue consumer that cannot be created leaves none
// running. Replicas share a durable consumer, so each message goes to one of them. A
// message is taken only when a handler is free for it (its delivery is an attempt), kept
// in progress while its handler runs (heartbeat), and acknowledged, terminated, or
// redelivered on the consumer's Retry schedule as the handler's error says.
func (b *Bus) Consume(ctx context.Context, cs ...Consumer) error {
	if err := b.WaitReady(ctx); err != nil {
		return nil // stopping before the bus came up
	}
	consumers := make([]jetstream.Consumer, len(cs))
	for i, c := range cs {
		cons, err := b.createConsumer(ctx, c)
		if err != nil {
			return err
		}
		if cons == nil {
			return nil // ctx ended
		}
		consumers[i] = cons
	}
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { c.run(ctx, consumers[i], b.log.With("consumer", c.Durable)) })
	}
	wg.Wait()
	return nil
}

// createConsumer creates or updates c's durable consumer. On the events stream it retries
// until ctx ends (NATS restarting or a cluster electing a leader; the daemon reports not
// ready meanwhile), and returns nil, nil then.
func (b *Bus) createConsumer(ctx context.Context, c Consumer) (jetstream.Consumer, error) {
	stream := StreamEvents
	maxAckPending := max(64, 4*c.parallel())
	if c.WorkQueue {
		// Each agent takes only what it runs: how many run at once is the agents' to say.
		stream, maxAckPending = StreamBuilds, 0
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       c.Durable,
		Description:   c.Description,
		FilterSubject: c.Subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.ackWait(),
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	}
	if c.MaxDeliver > 0 {
		cfg.MaxDeliver = c.MaxDeliver
	}
	for attempt := 0; ; attempt++ {
		cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		if c.WorkQueue {
			return nil, fmt.Errorf("creating consumer %s on stream %s: %w", c.Durable, stream, err)
		}
		wait := retryPolicy.Delay(attempt)
		b.log.Warn("creating consumer, will retry", "consumer", c.Durable, "error", err, "retry_in", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return nil, nil
		}
	}
}

// run takes c's messages until ctx ends, each once a handler is free for it, and returns
// when the handlers it started are done. One pull at a time keeps the messages of a key in
// the order the stream delivers them. Each pull is a short request of its own, so a
// consumer leadership change ends it and the next one finds the new leader (the long-lived
// pull of jetstream's Consume stalled then: nats-io/nats.go#2063).
func (c Consumer) run(ctx context.Context, cons jetstream.Consumer, log *slog.Logger) {
	slots := make(chan struct{}, c.parallel())
	var inflight sync.WaitGroup
	defer inflight.Wait()
	order := newKeyOrder(c.ackWait())
	for failures := 0; ; {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := pull(ctx, cons)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errIdle) {
				continue
			}
			wait := retryPolicy.Delay(failures)
			failures++
			log.Warn("pulling messages, will retry", "error", err, "retry_in", wait)
			if backoff.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		failures = 0
		p := c.parse(msg)
		if !order.start(p) {
			<-slots // queued behind the message of the same key being handled
			continue
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			for next := &p; next != nil; next = order.next(p.key) {
				c.handle(ctx, *next, log)
			}
		})
	}
}

// pullWait bounds one pull: a pull whose server went away (the consumer's leader died)
// is given up and replaced within it, rather than after missed heartbeats.
const pullWait = 5 * time.Second

// errIdle ends a pull that found no message: pull again.
var errIdle = errors.New("no message")

// pull takes one message, waiting at most pullWait for one.
func pull(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	pctx, cancel := context.WithTimeout(ctx, pullWait)
	defer cancel()
	msg, err := cons.Next(jetstream.FetchContext(pctx))
	switch {
	case err == nil:
		return msg, nil
	case ctx.Err() == nil && (pctx.Err() != nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages)):
		return nil, errIdle
	}
	return nil, fmt.Errorf("pulling a message: %w", err)
}

// parsed is a message taken from the stream, decoded by the consumer's Parse.
type parsed struct {
	msg   jetstream.Msg
	value any
	key   string
	err   error // Parse refused the message
}

// parse decodes msg with c.Parse, once, for its order and its handler.
func (c Consumer) parse(msg jetstream.Msg) parsed {
	p := parsed{msg: msg}
	if c.Parse != nil {
		p.value, p.key, p.err = c.Parse(msg.Data())
		if p.err != nil {
			p.key = "" // not ordered: it is terminated at once
		}
	}
	return p
}

// handle runs the handler on one delivery and settles the message as its error says.
func (c Consumer) handle(ctx context.Context, p parsed, log *slog.Logger) {
	msg := p.msg
	attempt := 1
	if meta, _ := msg.Metadata(); meta != nil {
		attempt = int(meta.NumDelivered)
	}
	err := p.err
	if err == nil {
		err = c.run1(ctx, Delivery{Data: msg.Data(), Value: p.value, Attempt: attempt}, msg)
	} else if !errors.Is(err, ErrPermanent) {
		err = fmt.Errorf("%w: %w", ErrPermanent, err) // the same bytes come back on redelivery
	}
	switch {
	case err == nil:
		// Acknowledged even when ctx ended meanwhile: the work is done, and a lost
		// acknowledgement would have it done again after AckWait.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ackWait())
		if err := msg.DoubleAck(actx); err != nil {
			// Redelivered later; every handler is idempotent.
			log.Warn("acknowledging", "subject", msg.Subject(), "error", err)
		}
		cancel()
	case errors.Is(err, ErrPermanent):
		log.Error("terminating message: redelivery cannot fix it", "subject", msg.Subject(), "attempt", attempt, "error", err)
		_ = msg.Term()
	case ctx.Err() != nil:
		// Shutting down: let another replica (or this one after restart) take it now.
		_ = msg.Nak()
	default:
		delay := retryDelay(cmp.Or(c.Retry, retryPolicy), attempt, err)
		if c.Retrying != nil {
			c.Retrying(ctx, msg.Data(), attempt, time.Now().Add(delay), err)
		}
		log.Warn("handler failed, will retry", "subject", msg.Subject(), "failures", attempt, "retry_in", delay, "error", err)
		_ = msg.NakWithDelay(delay)
	}
}

// run1 runs the handler on d, keeping the message ours (heartbeat) while it works, within
// the consumer's timeout.
func (c Consumer) run1(ctx context.Context, d Delivery, msg jetstream.Msg) error {
	stop := heartbeat(msg, c.ackWait())
	defer stop()
	if c.Timeout >= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmp.Or(c.Timeout, defaultHandlerTimeout))
		defer cancel()
	}
	return c.Handle(ctx, d)
}

func (c Consumer) parallel() int { return max(c.Parallel, 1) }

func (c Consumer) ackWait() time.Duration { return cmp.Or(c.AckWait, ackWait) }

// retryDelay is the wait before the next attempt after the given number of failures: p's
// delay (for the default, exponential with jitter from about a second up to a minute), and
// never less than the error asks for (a registry's Retry-After, the expiry of another
// replica's lease).
func retryDelay(p backoff.Policy, failures int, err error) time.Duration {
	d := p.Delay(max(failures-1, 0))
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
	ackWait time.Duration
	mu      sync.Mutex
	queued  map[string][]waiting
}

type waiting struct {
	p    parsed
	stop func() // ends the heartbeat that keeps it ours while it waits
}

func newKeyOrder(ackWait time.Duration) *keyOrder {
	return &keyOrder{ackWait: ackWait, queued: map[string][]waiting{}}
}

// start reports whether p may be handled now; if not, it waits behind the message of
// its key being handled. The empty key is never ordered.
func (o *keyOrder) start(p parsed) bool {
	key := p.key
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
	o.queued[key] = append(q, waiting{p: p, stop: heartbeat(p.msg, o.ackWait)})
	return false
}

// next is key's next waiting message, or nil when none waits: the key is free then.
func (o *keyOrder) next(key string) *parsed {
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
	return &q[0].p
}
