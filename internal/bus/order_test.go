package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestConsumeKeepsOrderPerKey publishes ten messages for each of three keys, interleaved,
// to a consumer handling eight at a time: each key's messages are handled one at a time in
// the order published, while the keys go on in parallel (the first message of key a waits
// until key b's first one is being handled, so this cannot pass serially).
func TestConsumeKeepsOrderPerKey(t *testing.T) {
	b := openEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type msg struct {
		Key string `json:"key"`
		N   int    `json:"n"`
	}
	const perKey = 10
	keys := []string{"a", "b", "c"}
	for n := range perKey {
		for _, k := range keys {
			if _, err := b.Publish(ctx, "promoter.events.registry", fmt.Sprint(k, n), msg{k, n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var (
		mu      sync.Mutex
		seen    = map[string][]int{}
		running = map[string]int{}
		total   int
	)
	bStarted := make(chan struct{})
	var bOnce sync.Once
	done := make(chan struct{})
	handle := func(ctx context.Context, m msg) error {
		mu.Lock()
		running[m.Key]++
		if running[m.Key] > 1 {
			t.Errorf("key %s: %d messages handled at once", m.Key, running[m.Key])
		}
		mu.Unlock()
		if m.Key == "b" {
			bOnce.Do(func() { close(bStarted) })
		}
		if m.Key == "a" && m.N == 0 {
			select {
			case <-bStarted:
			case <-time.After(10 * time.Second):
				t.Error("key b was not handled while key a's first message was: keys do not run in parallel")
			}
		}
		mu.Lock()
		defer mu.Unlock()
		running[m.Key]--
		seen[m.Key] = append(seen[m.Key], m.N)
		if total++; total == perKey*len(keys) {
			close(done)
		}
		return nil
	}
	go func() {
		_ = b.Consume(ctx, Consumer{Durable: "order", Subject: "promoter.events.registry", Parallel: 8,
			Handle: Decode(handle),
			Parse:  ParseJSON(func(m msg) string { return m.Key })})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("handled %d of %d messages", total, perKey*len(keys))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		for i, n := range seen[k] {
			if n != i {
				t.Errorf("key %s handled in order %v, want 0..%d", k, seen[k], perKey-1)
				break
			}
		}
	}
}

// TestParseDecodesOnce: a consumer with a Parser decodes each message once, and its handler
// gets that value; a message the parser refuses is terminated without reaching the handler.
func TestParseDecodesOnce(t *testing.T) {
	b := openEmbedded(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type msg struct {
		Key string `json:"key"`
	}
	for i, data := range []any{msg{"a"}, json.RawMessage(`"not an object"`), msg{"b"}} {
		if _, err := b.Publish(ctx, "promoter.events.registry", fmt.Sprint(i), data); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu     sync.Mutex
		parses int
		got    []string
	)
	parse := ParseJSON(func(m msg) string { return m.Key })
	handled := make(chan struct{}, 3)
	go func() {
		_ = b.Consume(ctx, Consumer{Durable: "parse", Subject: "promoter.events.registry",
			Parse: func(data []byte) (any, string, error) {
				mu.Lock()
				parses++
				mu.Unlock()
				return parse(data)
			},
			Handle: func(_ context.Context, d Delivery) error {
				m, ok := d.Value.(msg)
				if !ok {
					t.Errorf("handler got value %#v (%T), want the parsed msg", d.Value, d.Value)
				}
				mu.Lock()
				got = append(got, m.Key)
				mu.Unlock()
				handled <- struct{}{}
				return nil
			}})
	}()
	for range 2 {
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatal("the two well-formed messages were not handled within 10s")
		}
	}
	info, err := b.js.Consumer(ctx, StreamEvents, "parse")
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(10*time.Second, func() error {
		ci, err := info.Info(ctx)
		if err == nil && (ci.NumAckPending != 0 || ci.NumPending != 0) {
			return fmt.Errorf("%d pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
		}
		return err
	}); err != nil {
		t.Errorf("the malformed message was not settled (terminated): %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if parses != 3 {
		t.Errorf("Parse ran %d times for 3 messages, want 3", parses)
	}
	if fmt.Sprint(got) != "[a b]" {
		t.Errorf("handled %v, want [a b] (the malformed message never reaches the handler)", got)
	}
	select {
	case <-handled:
		t.Error("the malformed message reached the handler")
	default:
	}
}
