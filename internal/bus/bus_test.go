package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/testenv"
)

func TestEmbeddedServerCreatesStreamsAndSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := Open(ctx, WithStoreDir(dir))
	if err != nil {
		t.Fatalf("Open embedded: %v", err)
	}
	if err := b.WaitReady(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	dup, err := b.Publish(ctx, "promoter.events.registry", "id-1", map[string]string{"a": "b"})
	if err != nil || dup {
		t.Fatalf("first publish: dup=%v err=%v", dup, err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Same store directory: the stream, its message and the de-duplication window survive.
	b2, err := Open(ctx, WithStoreDir(dir))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { b2.Close() })
	if err := b2.WaitReady(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err := b2.js.Stream(ctx, StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("messages after reopen: got %d, want 1", n)
	}
	dup, err = b2.Publish(ctx, "promoter.events.registry", "id-1", map[string]string{"a": "b"})
	if err != nil || !dup {
		t.Errorf("publish of the same id after reopen: dup=%v err=%v, want dup=true", dup, err)
	}
}

func TestStreamsHaveExplicitLimits(t *testing.T) {
	n := testenv.StartNATS(t)
	b := open(t, n.URL)
	ctx := context.Background()
	for _, name := range []string{StreamEvents, StreamBuilds} {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		cfg := s.CachedInfo().Config
		if cfg.MaxAge == 0 || cfg.MaxBytes <= 0 || cfg.Duplicates != DuplicateWindow {
			t.Errorf("%s limits: maxAge=%s maxBytes=%d duplicates=%s", name, cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates)
		}
	}
	s, _ := b.js.Stream(ctx, StreamBuilds)
	if got := s.CachedInfo().Config.Retention; got != jetstream.WorkQueuePolicy {
		t.Errorf("%s retention: got %v, want work queue", StreamBuilds, got)
	}
	// Ensuring twice is idempotent.
	if err := b.ensure(ctx); err != nil {
		t.Errorf("second ensure: %v", err)
	}
}

func TestReadinessFollowsTheServer(t *testing.T) {
	n := testenv.StartNATS(t)
	b := open(t, n.URL)
	ctx := context.Background()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready with server up: %v", err)
	}
	n.Shutdown()
	waitFor(t, func() bool { return errors.Is(b.Ready(ctx), ErrNotReady) }, "Ready to fail after the server stopped")
	n.Restart(t)
	if err := b.WaitReady(withTimeout(t, 20*time.Second)); err != nil {
		t.Fatalf("Ready after the server restarted: %v", err)
	}
	if _, err := b.Publish(ctx, "promoter.events.source", "after-restart", "x"); err != nil {
		t.Errorf("publish after restart: %v", err)
	}
}

func TestOpenWithUnreachableServerRetriesInBackground(t *testing.T) {
	// Nothing listens on port 1: Open succeeds (it must not crash-loop the pod) and reports not ready.
	b, err := Open(context.Background(), WithURL("nats://127.0.0.1:1"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if err := b.Ready(context.Background()); !errors.Is(err, ErrNotReady) {
		t.Errorf("Ready: got %v, want ErrNotReady", err)
	}
	if _, err := b.Revisions(); !errors.Is(err, ErrNotReady) {
		t.Errorf("Revisions: got %v, want ErrNotReady", err)
	}
}

func TestClusterReplicas(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	b, err := Open(context.Background(), WithURL(c.URLs()), WithReplicas(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.WaitReady(withTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err := b.js.Stream(context.Background(), StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("replicas: got %d, want 3", got)
	}
}

func open(t *testing.T, url string) *Bus {
	t.Helper()
	b, err := Open(context.Background(), WithURL(url))
	if err != nil {
		t.Fatalf("Open %s: %v", url, err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.WaitReady(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return b
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor waits up to 20s for cond.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	err := testenv.WaitFor(20*time.Second, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
	if err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}
