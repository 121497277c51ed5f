// Package bustest opens promoter's bus on a real NATS JetStream server for tests: the
// streams and the KV bucket exist when its helpers return, and everything is closed when
// the test ends. Its Recorder stands in for the bus where a unit test fakes the boundary.
// It must not be imported by non-test code.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// readyTimeout bounds opening the bus and creating its streams on a loaded machine.
const readyTimeout = 30 * time.Second

// Start starts a NATS server (testenv.StartNATS) and opens the bus on it.
func Start(t testing.TB, opts ...bus.Option) *bus.Bus {
	t.Helper()
	return Open(t, testenv.StartNATS(t).URL, opts...)
}

// Open opens the bus on the NATS server at url and waits until it is ready.
func Open(t testing.TB, url string, opts ...bus.Option) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	b, err := bus.Open(ctx, append([]bus.Option{bus.WithURL(url)}, opts...)...)
	if err != nil {
		t.Fatalf("opening the bus at %s: %v", url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.WaitReady(ctx); err != nil {
		t.Fatalf("bus at %s not ready: %v", url, err)
	}
	return b
}

// Revisions starts a NATS server and returns the bus's revision KV bucket (for
// state.New).
func Revisions(t testing.TB) jetstream.KeyValue {
	t.Helper()
	kv, err := Start(t).Revisions()
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
