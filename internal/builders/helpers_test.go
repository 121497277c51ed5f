package builders_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/types"
)

// openBus starts a NATS server and opens the bus on it with promoter's streams.
func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	return bustest.Start(t)
}

// results follows the build results published on the bus from now on.
func results(t *testing.T, b *bus.Bus) <-chan types.BuildResult {
	t.Helper()
	ctx := context.Background()
	cons, err := b.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{types.SubjectBuildResults},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan types.BuildResult, 64)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var r types.BuildResult
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Errorf("malformed build result %s: %v", msg.Data(), err)
			return
		}
		ch <- r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return ch
}

// nextResult waits for one build result.
func nextResult(t *testing.T, ch <-chan types.BuildResult, timeout time.Duration) types.BuildResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(timeout):
		t.Fatalf("no build result within %s", timeout)
		return types.BuildResult{}
	}
}

// runAgent runs a until the test ends.
func runAgent(t *testing.T, a *builders.Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})
}

// platforms parses each of ss, which must be a platform.
func platforms(ss ...string) []types.Platform {
	out := make([]types.Platform, len(ss))
	for i, s := range ss {
		out[i] = types.MustPlatform(s)
	}
	return out
}
