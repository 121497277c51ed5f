package bus

import (
	"context"
	"testing"
	"time"
)

// TestEmbeddedServerSyncsBeforeAck checks, on the running embedded server, that JetStream
// fsyncs every write before it acknowledges it (SyncAlways), so a 2xx survives a power
// loss. A power loss cannot be simulated in a test: SIGKILL leaves the page cache intact,
// so what is checked is the configuration the server actually runs with.
func TestEmbeddedServerSyncsBeforeAck(t *testing.T) {
	b, err := Open(context.Background(), WithStoreDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.WaitReady(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	cfg := b.server.JetStreamConfig()
	if cfg == nil {
		t.Fatal("embedded server runs without JetStream")
	}
	if !cfg.SyncAlways {
		t.Errorf("JetStream SyncAlways: got false, want true (sync interval %s: acknowledged events and KV updates of the last %s are lost on power loss)", cfg.SyncInterval, cfg.SyncInterval)
	}
	// The streams and the KV bucket are R1 on the embedded server: each write is fsynced
	// by the store itself, not relaxed to a Raft flush.
	ctx := context.Background()
	for _, name := range []string{StreamEvents, StreamBuilds, "KV_" + BucketRevisions} {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 1 {
			t.Errorf("%s replicas: got %d, want 1", name, got)
		}
	}
}
