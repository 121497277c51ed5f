package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func openEmbedded(t *testing.T) *Bus {
	t.Helper()
	b, err := Open(context.Background(), WithStoreDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.WaitReady(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !b.batches.Load() {
		t.Fatal("the embedded server's events stream does not allow atomic batches")
	}
	return b
}

// round makes n pending publishes with ids prefix-0 ... prefix-(n-1).
func round(prefix string, n int) []*pending {
	out := make([]*pending, n)
	for i := range out {
		out[i] = &pending{subject: "promoter.events.registry", id: fmt.Sprintf("%s-%d", prefix, i),
			data: []byte(`{"n":` + fmt.Sprint(i) + `}`), done: make(chan result, 1)}
	}
	return out
}

func streamMsgs(t *testing.T, b *Bus) uint64 {
	t.Helper()
	s, err := b.js.Stream(context.Background(), StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestGroupCommitStoresARoundAsOneBatch commits one round the way the committer does and
// checks that it went to the server as one batch, every message stored once and readable
// with its own id.
func TestGroupCommitStoresARoundAsOneBatch(t *testing.T) {
	b := openEmbedded(t)
	r := round("batch", 30)
	b.commit.commit(r)
	for _, p := range r {
		if res := <-p.done; res.err != nil || res.duplicate {
			t.Errorf("%s: got duplicate=%v err=%v, want stored", p.id, res.duplicate, res.err)
		}
	}
	if got := b.commit.batchCount.Load(); got != 1 {
		t.Errorf("batches: got %d, want 1", got)
	}
	if got := streamMsgs(t, b); got != 30 {
		t.Errorf("stream holds %d messages, want 30", got)
	}
	s, _ := b.js.Stream(context.Background(), StreamEvents)
	m, err := s.GetMsg(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != "batch-6" {
		t.Errorf("message 7 has id %q, want batch-6", got)
	}
}

// TestGroupCommitReportsDuplicates checks that a round holding an id the stream already
// has is still stored (the server refuses the batch; the committer publishes one by one),
// and that exactly that message is reported as a duplicate.
func TestGroupCommitReportsDuplicates(t *testing.T) {
	b := openEmbedded(t)
	ctx := context.Background()
	if dup, err := b.Publish(ctx, "promoter.events.registry", "dup-5", map[string]int{"n": 5}); err != nil || dup {
		t.Fatalf("first publish: dup=%v err=%v", dup, err)
	}
	r := round("dup", 30)
	b.commit.commit(r)
	for i, p := range r {
		res := <-p.done
		if res.err != nil || res.duplicate != (i == 5) {
			t.Errorf("%s: got duplicate=%v err=%v, want duplicate=%v", p.id, res.duplicate, res.err, i == 5)
		}
	}
	if got := b.commit.batchCount.Load(); got != 0 {
		t.Errorf("batches stored: got %d, want 0 (the server refuses a batch with a duplicate)", got)
	}
	if got := streamMsgs(t, b); got != 30 {
		t.Errorf("stream holds %d messages, want 30", got)
	}
}

// TestPublishConcurrentlyStoresEachOnce sends 500 events from 64 senders through Publish,
// each id twice, and checks the stream holds each once and every second send was reported
// as a duplicate, whichever way the committer grouped them.
func TestPublishConcurrentlyStoresEachOnce(t *testing.T) {
	b := openEmbedded(t)
	ctx := context.Background()
	const events, senders = 500, 64
	ids := make(chan int)
	var (
		mu   sync.Mutex
		dups int
		wg   sync.WaitGroup
	)
	for range senders {
		wg.Go(func() {
			for i := range ids {
				for range 2 {
					dup, err := b.Publish(ctx, "promoter.events.registry", fmt.Sprint("event-", i), map[string]int{"n": i})
					if err != nil {
						t.Errorf("event %d: %v", i, err)
						return
					}
					if dup {
						mu.Lock()
						dups++
						mu.Unlock()
					}
				}
			}
		})
	}
	for i := range events {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if dups != events {
		t.Errorf("duplicates reported: got %d, want %d (every second send)", dups, events)
	}
	if got := streamMsgs(t, b); got != events {
		t.Errorf("stream holds %d messages, want %d", got, events)
	}
	t.Logf("%d of %d stores went in %d batches", b.commit.batched.Load(), events, b.commit.batchCount.Load())
}

// TestGroupCommitProbesARedelivery: after a batch refused for a duplicate, a round that is
// all duplicates again is published one by one without a batch, and the first round of new
// messages goes back to batches; every message is reported right either way.
func TestGroupCommitProbesARedelivery(t *testing.T) {
	b := openEmbedded(t)
	check := func(r []*pending, wantDup bool) {
		t.Helper()
		for _, p := range r {
			if res := <-p.done; res.err != nil || res.duplicate != wantDup {
				t.Errorf("%s: got duplicate=%v err=%v, want duplicate=%v", p.id, res.duplicate, res.err, wantDup)
			}
		}
	}
	b.commit.commit(round("first", 30))
	b.commit.commit(round("first", 30)) // refused as a batch, published one by one
	if !b.commit.redelivered.Load() {
		t.Fatal("a batch refused for a duplicate did not mark a redelivery")
	}
	again := round("first", 30)
	b.commit.commit(again)
	check(again, true)
	if got := b.commit.batchCount.Load(); got != 1 {
		t.Errorf("batches stored: got %d, want 1 (the first round only)", got)
	}
	fresh := round("fresh", 30)
	b.commit.commit(fresh)
	check(fresh, false)
	if b.commit.redelivered.Load() {
		t.Error("a round of new messages left the redelivery mark set")
	}
	if got := b.commit.batchCount.Load(); got != 2 {
		t.Errorf("batches stored: got %d, want 2 (the new round's after its first message)", got)
	}
	if got := streamMsgs(t, b); got != 60 {
		t.Errorf("stream holds %d messages, want 60", got)
	}
}
