package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/bus"
)

// ackWait is how long a message may stay unacknowledged before redelivery; handlers
// signal progress every ackWait/3, so a long merge or promotion is not redelivered while
// it runs, but one whose replica died is redelivered soon after.
const ackWait = 30 * time.Second

// errPermanent marks a handler error that redelivery cannot fix (a malformed message); the
// message is terminated instead of retried.
var errPermanent = errors.New("permanent")

// consumer is one durable pull consumer of the events stream and its handler.
type consumer struct {
	durable string
	subject string
	handle  func(ctx context.Context, data []byte) error
}

// decode wraps a typed handler: the message is JSON of T.
func decode[T any](fn func(context.Context, T) error) func(context.Context, []byte) error {
	return func(ctx context.Context, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("%w: decoding %T: %v", errPermanent, v, err)
		}
		return fn(ctx, v)
	}
}

// run consumes until ctx ends. Replicas share the durable consumer, so each message goes to
// one of them. A failed handler's message is redelivered with a growing delay.
func (c consumer) run(ctx context.Context, d *daemon) error {
	if err := d.bus.WaitReady(ctx); err != nil {
		return nil // stopping before the bus came up
	}
	cons, err := d.bus.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable:       c.durable,
		FilterSubject: c.subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		BackOff:       nil,
		MaxAckPending: 64,
	})
	if err != nil {
		return fmt.Errorf("creating consumer %s: %w", c.durable, err)
	}
	log := d.o.log.With("consumer", c.durable)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		d.handleMsg(ctx, c, msg, log)
	}, jetstream.PullMaxMessages(8), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() == nil {
			log.Debug("consume", "error", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("consuming %s: %w", c.durable, err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

func (d *daemon) handleMsg(ctx context.Context, c consumer, msg jetstream.Msg, log interface {
	Warn(string, ...any)
	Error(string, ...any)
}) {
	// Keep the message ours while the handler works.
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	err := c.handle(ctx, msg.Data())
	close(stop)
	switch {
	case err == nil:
		if err := msg.DoubleAck(ctx); err != nil && ctx.Err() == nil {
			log.Warn("acknowledging", "error", err)
		}
	case errors.Is(err, errPermanent):
		log.Error("dropping malformed message", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
	default:
		meta, _ := msg.Metadata()
		n := uint64(1)
		if meta != nil {
			n = meta.NumDelivered
		}
		delay := min(time.Duration(1<<min(n, 6))*time.Second, time.Minute)
		if ctx.Err() != nil {
			// Shutting down: let another replica (or this one after restart) take it now.
			delay = 0
		}
		log.Warn("handler failed, will retry", "subject", msg.Subject(), "delivery", n, "retry_in", delay, "error", err)
		_ = msg.NakWithDelay(delay)
	}
}
