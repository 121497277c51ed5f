package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/backoff"
)

// TestConsumeWorkQueue: what a handler returns decides what becomes of a build request:
// acknowledged or terminated it leaves the queue; failed it comes back, after the
// consumer's Retry delay, as the next attempt.
func TestConsumeWorkQueue(t *testing.T) {
	tests := []struct {
		name string
		data string
		// fail is what attempt n returns (nil past the end).
		fail         []error
		wantAttempts []int
	}{
		{name: "handled", data: `{}`, wantAttempts: []int{1}},
		{name: "permanent failure terminated", data: `{}`, fail: []error{fmt.Errorf("%w: unknown pipeline", ErrPermanent)}, wantAttempts: []int{1}},
		{name: "failure retried as the next attempt", data: `{}`, fail: []error{errors.New("503"), errors.New("503")}, wantAttempts: []int{1, 2, 3}},
		{name: "malformed message dropped", data: `{`, wantAttempts: nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := openEmbedded(t)
			ctx, cancel := context.WithCancel(context.Background())
			subject := fmt.Sprintf("promoter.builds.test%d", i)
			if _, err := b.publishOne(ctx, subject, "req", []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			var (
				mu       sync.Mutex
				attempts []int
			)
			handle := DecodeAttempt(func(_ context.Context, _ struct{}, attempt int) error {
				mu.Lock()
				defer mu.Unlock()
				attempts = append(attempts, attempt)
				if attempt <= len(tc.fail) {
					return tc.fail[attempt-1]
				}
				return nil
			})
			done := make(chan error, 1)
			go func() {
				done <- b.Consume(ctx, Consumer{WorkQueue: true, Durable: "agent", Subject: subject, Handle: handle,
					Timeout: NoTimeout, Retry: backoff.Policy{Min: 10 * time.Millisecond, Max: 10 * time.Millisecond}})
			}()
			waitFor(t, func() bool { return len(stored(t, b, StreamBuilds, subject)) == 0 }, "the queue to empty")
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Consume: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tc.wantAttempts, attempts); diff != "" {
				t.Errorf("attempts handled (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConsumeTakesOnlyWhatItHandles: a work-queue consumer handling one message at a time
// holds one, and leaves the others on the queue for other agents (a message taken is an
// attempt, and one waiting in a buffer would be redelivered as the next).
func TestConsumeTakesOnlyWhatItHandles(t *testing.T) {
	b := openEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const subject = "promoter.builds.one"
	for i := range 3 {
		if _, err := b.publishOne(ctx, subject, fmt.Sprint(i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	started := make(chan struct{}, 3)
	release := make(chan struct{})
	handle := func(ctx context.Context, _ Delivery) error {
		started <- struct{}{}
		<-release
		return nil
	}
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, Consumer{WorkQueue: true, Durable: "one", Subject: subject, Handle: handle, Parallel: 1})
	}()
	<-started
	cons, err := b.js.Consumer(ctx, StreamBuilds, "one")
	if err != nil {
		t.Fatal(err)
	}
	// The handler holds its message and no pull is outstanding, so nothing more comes.
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := [3]uint64{uint64(info.NumAckPending), info.NumPending, uint64(info.NumWaiting)}
	if want := [3]uint64{1, 2, 0}; got != want {
		t.Errorf("while one is handled: %d delivered, %d waiting and %d pulls, want %v", got[0], got[1], got[2], want)
	}
	close(release)
	waitFor(t, func() bool { return len(stored(t, b, StreamBuilds, subject)) == 0 }, "the queue to empty")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
}

// TestConsumeRefusesOverlappingWorkQueueConsumers: a work queue takes one consumer per
// subject; Consume says so rather than retrying, and handles nothing.
func TestConsumeRefusesOverlappingWorkQueueConsumers(t *testing.T) {
	b := openEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	handle := func(context.Context, Delivery) error {
		t.Error("a message was handled")
		return nil
	}
	err := b.Consume(ctx,
		Consumer{WorkQueue: true, Durable: "all", Subject: "promoter.builds.>", Handle: handle},
		Consumer{WorkQueue: true, Durable: "amd64", Subject: "promoter.builds.linux.amd64", Handle: handle})
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		t.Fatalf("got %v, want the server's refusal (a jetstream.APIError)", err)
	}
}

// TestConsumeAcknowledgesWhenStopping: a handler that finishes while the consumer stops
// has its message acknowledged, not redelivered to be handled again.
func TestConsumeAcknowledgesWhenStopping(t *testing.T) {
	b := openEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	const subject = "promoter.builds.stop"
	if _, err := b.publishOne(ctx, subject, "req", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	handle := func(hctx context.Context, _ Delivery) error {
		cancel()
		<-hctx.Done()
		return nil // done all the same
	}
	if err := b.Consume(ctx, Consumer{WorkQueue: true, Durable: "stop", Subject: subject, Handle: handle}); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	waitFor(t, func() bool { return len(stored(t, b, StreamBuilds, subject)) == 0 }, "the acknowledged message to leave the queue")
}

// TestStored: Stored reads what a stream holds on a subject, wildcards included, oldest
// first, with each message's id.
func TestStored(t *testing.T) {
	b := openEmbedded(t)
	ctx := context.Background()
	for _, m := range []struct{ subject, id string }{
		{"promoter.events.registry", "r1"}, {"promoter.events.steps", "s1"}, {"promoter.events.registry", "r2"},
	} {
		if _, err := b.publishOne(ctx, m.subject, m.id, []byte(`"`+m.id+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		subject string
		want    []string
	}{
		{"promoter.events.registry", []string{"promoter.events.registry r1 \"r1\"", "promoter.events.registry r2 \"r2\""}},
		{"promoter.events.>", []string{"promoter.events.registry r1 \"r1\"", "promoter.events.steps s1 \"s1\"", "promoter.events.registry r2 \"r2\""}},
		{"promoter.events.source", nil},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			var got []string
			for _, m := range stored(t, b, StreamEvents, tc.subject) {
				got = append(got, m.Subject+" "+m.MsgID+" "+string(m.Data))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Stored (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := b.Stored(ctx, "NO_SUCH_STREAM", ">"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("unknown stream: got %v, want ErrStreamNotFound", err)
	}
}

func stored(t *testing.T, b *Bus, stream, subject string) []StoredMessage {
	t.Helper()
	msgs, err := b.Stored(context.Background(), stream, subject)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
