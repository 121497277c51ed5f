package builders_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// openBus starts a NATS server and opens the bus on it with promoter's streams.
func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	return bustest.Start(t)
}

// resultFeed reads the build results published on the bus after a point.
type resultFeed struct {
	b    *bus.Bus
	seen uint64 // sequence of the last result read
}

// results follows the build results published on the bus from now on.
func results(t *testing.T, b *bus.Bus) *resultFeed {
	t.Helper()
	f := &resultFeed{b: b}
	if stored := storedResults(t, b); len(stored) > 0 {
		f.seen = stored[len(stored)-1].Seq
	}
	return f
}

// nextResult waits for the next build result.
func nextResult(t *testing.T, f *resultFeed, timeout time.Duration) types.BuildResult {
	t.Helper()
	var r types.BuildResult
	err := testenv.WaitFor(timeout, func() error {
		for _, m := range storedResults(t, f.b) {
			if m.Seq <= f.seen {
				continue
			}
			f.seen = m.Seq
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("malformed build result %s: %v", m.Data, err)
			}
			return nil
		}
		return errors.New("none published")
	})
	if err != nil {
		t.Fatalf("no build result within %s: %v", timeout, err)
	}
	return r
}

func storedResults(t *testing.T, b *bus.Bus) []bus.StoredMessage {
	t.Helper()
	stored, err := b.Stored(context.Background(), bus.StreamEvents, types.SubjectBuildResults)
	if err != nil {
		t.Fatal(err)
	}
	return stored
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
