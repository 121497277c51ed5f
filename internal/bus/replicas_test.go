package bus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// replicasOf returns the replica count of each stream promoter creates, the KV bucket's
// stream included.
func replicasOf(t *testing.T, b *Bus) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, name := range []string{StreamEvents, StreamBuilds, "KV_" + BucketRevisions} {
		s, err := b.js.Stream(context.Background(), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		got[name] = s.CachedInfo().Config.Replicas
	}
	return got
}

func wantAll(n int) map[string]int {
	return map[string]int{StreamEvents: n, StreamBuilds: n, "KV_" + BucketRevisions: n}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openWith(t *testing.T, opts ...Option) (*Bus, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	b, err := Open(context.Background(), append(opts, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, logs
}

func TestReplicasOnAnExternalServer(t *testing.T) {
	tests := []struct {
		name     string
		nodes    int // 1: a single non-clustered server; more: a cluster
		replicas int
		want     int   // replicas of every stream once ready
		wantErr  error // Ready's error instead
		wantText []string
	}{
		{name: "auto on a cluster of 3 is R3", nodes: 3, replicas: AutoReplicas, want: 3},
		{name: "auto on a single server falls back to R1 with a warning", nodes: 1, replicas: AutoReplicas, want: 1,
			wantText: []string{"not clustered", "nats.replicas: 1"}},
		{name: "explicit 1 on a cluster is R1", nodes: 3, replicas: 1, want: 1},
		{name: "explicit 3 on a single server says what to set", nodes: 1, replicas: 3, wantErr: ErrReplicas,
			wantText: []string{"nats.replicas is 3", "not clustered", "set nats.replicas: 1"}},
		{name: "auto on a cluster of 2 says what to set", nodes: 2, replicas: AutoReplicas, wantErr: ErrReplicas,
			wantText: []string{"nats.replicas is unset, so 3", "fewer than 3 JetStream servers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var url string
			if tt.nodes == 1 {
				url = testenv.StartNATS(t).URL
			} else {
				url = testenv.StartNATSCluster(t, tt.nodes).URLs()
			}
			b, logs := openWith(t, WithURL(url), WithReplicas(tt.replicas))
			if tt.wantErr != nil {
				var err error
				waitFor(t, func() bool {
					err = b.Ready(context.Background())
					return errors.Is(err, tt.wantErr)
				}, "Ready to fail with "+tt.wantErr.Error())
				for _, s := range tt.wantText {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Ready error %q lacks %q", err, s)
					}
				}
				return
			}
			if err := b.WaitReady(withTimeout(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
			if got := replicasOf(t, b); !equal(got, wantAll(tt.want)) {
				t.Errorf("replicas: got %v, want %v", got, wantAll(tt.want))
			}
			for _, s := range tt.wantText {
				if !strings.Contains(logs.String(), s) {
					t.Errorf("logs lack %q:\n%s", s, logs)
				}
			}
		})
	}
}

// TestR1StreamsAreScaledUp: a cluster whose streams and bucket were created R1 (the old
// default) gets them updated to R3 in place, keeping their messages, when the daemon
// restarts with the new default.
func TestR1StreamsAreScaledUp(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	old, _ := openWith(t, WithURL(c.URLs()), WithReplicas(1))
	if err := old.WaitReady(withTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := old.Publish(ctx, "promoter.events.registry", "before-scale-up", "x"); err != nil {
		t.Fatal(err)
	}
	kv, _ := old.Revisions()
	if _, err := kv.Put(ctx, "app.r1", []byte("state")); err != nil {
		t.Fatal(err)
	}
	old.Close()

	b, _ := openWith(t, WithURL(c.URLs()))
	if err := b.WaitReady(withTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := replicasOf(t, b); !equal(got, wantAll(3)) {
		t.Errorf("replicas after reopen with the default: got %v, want %v", got, wantAll(3))
	}
	s, _ := b.js.Stream(ctx, StreamEvents)
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("events after scale-up: got %d, want 1", n)
	}
	kv, _ = b.Revisions()
	if e, err := kv.Get(ctx, "app.r1"); err != nil || string(e.Value()) != "state" {
		t.Errorf("KV entry after scale-up: %v %v", e, err)
	}
}

// TestR3SurvivesLosingOneNode: with one of three servers down, a daemon (re)starting
// becomes ready, and publishes and KV updates are acknowledged by the remaining quorum.
func TestR3SurvivesLosingOneNode(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	first, _ := openWith(t, WithURL(c.URLs()))
	if err := first.WaitReady(withTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	first.Close()
	c.Nodes[0].Shutdown()

	b, _ := openWith(t, WithURL(c.URLs()))
	if err := b.WaitReady(withTimeout(t, 60*time.Second)); err != nil {
		t.Fatalf("Ready with 2 of 3 nodes: %v", err)
	}
	ctx := context.Background()
	if _, err := b.Publish(withTimeout(t, 30*time.Second), "promoter.events.registry", "one-node-down", "x"); err != nil {
		t.Errorf("publish with 2 of 3 nodes: %v", err)
	}
	kv, err := b.Revisions()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "app.r2", []byte("state")); err != nil {
		t.Errorf("KV put with 2 of 3 nodes: %v", err)
	}
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
