package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// messages are n messages on subject with ids prefix-0 ... prefix-(n-1).
func messages(subject, prefix string, n int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = Message{Subject: subject, MsgID: fmt.Sprintf("%s-%d", prefix, i), Value: map[string]int{"n": i}}
	}
	return out
}

// TestPublishAllGroupCommits: the messages of one PublishAll go to the events stream in
// atomic batches, each stored once; published again, every one is reported as a
// duplicate and nothing is stored; a mix of both reports exactly the old ones.
func TestPublishAllGroupCommits(t *testing.T) {
	b := openEmbedded(t)
	ctx := withTimeout(t, 60*time.Second)
	const n = 2500
	first := messages("promoter.events.registry", "all", n)
	tests := []struct {
		name     string
		msgs     []Message
		wantDups func(i int) bool
		wantMsgs uint64
	}{
		{"new ids", first, func(int) bool { return false }, n},
		{"the same ids again", first, func(int) bool { return true }, n},
		{"old and new ids mixed", func() []Message {
			var mixed []Message
			for i, m := range messages("promoter.events.registry", "more", 100) {
				mixed = append(mixed, first[i], m)
			}
			return mixed
		}(), func(i int) bool { return i%2 == 0 }, n + 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dups, err := b.PublishAll(ctx, tc.msgs)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]bool, len(tc.msgs))
			for i := range want {
				want[i] = tc.wantDups(i)
			}
			if diff := cmp.Diff(want, dups); diff != "" {
				t.Errorf("duplicates (-want +got):\n%s", diff)
			}
			if got := streamMsgs(t, b); got != tc.wantMsgs {
				t.Errorf("stream holds %d messages, want %d", got, tc.wantMsgs)
			}
		})
	}
	// How the rounds split depends on timing; that the request went in batches does not.
	if b.commit.batchCount.Load() == 0 {
		t.Errorf("no batch was stored: the first %d messages went one by one", n)
	}
	t.Logf("%d messages stored in %d batches", b.commit.batched.Load(), b.commit.batchCount.Load())
}

// TestPublishAllOtherStreams: messages outside the events stream are stored one by one,
// with the same answers.
func TestPublishAllOtherStreams(t *testing.T) {
	b := openEmbedded(t)
	ctx := withTimeout(t, 30*time.Second)
	msgs := messages("promoter.builds.linux-amd64", "build", 40)
	for _, wantDup := range []bool{false, true} {
		dups, err := b.PublishAll(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		for i, dup := range dups {
			if dup != wantDup {
				t.Fatalf("message %d: duplicate=%v, want %v", i, dup, wantDup)
			}
		}
	}
	if got := b.commit.batchCount.Load(); got != 0 {
		t.Errorf("batches: got %d, want 0 outside the events stream", got)
	}
}

// TestPublishAllFails: a message that cannot be encoded fails the whole call before
// anything is sent, and so does a caller that gave up.
func TestPublishAllFails(t *testing.T) {
	b := openEmbedded(t)
	bad := append(messages("promoter.events.registry", "bad", 3), Message{Subject: "promoter.events.registry", MsgID: "chan", Value: make(chan int)})
	if _, err := b.PublishAll(context.Background(), bad); err == nil {
		t.Error("a message that cannot be encoded: got no error")
	}
	if got := streamMsgs(t, b); got != 0 {
		t.Errorf("stream holds %d messages after a refused call, want 0", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.PublishAll(ctx, messages("promoter.events.registry", "gone", 5000)); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled caller: got %v, want context.Canceled", err)
	}
}
