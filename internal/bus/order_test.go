package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
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
			Key: func(data []byte) string {
				var m msg
				_ = json.Unmarshal(data, &m)
				return m.Key
			}})
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
