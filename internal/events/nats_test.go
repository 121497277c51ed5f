package events

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// openBus connects to a real JetStream server and creates promoter's streams.
func openBus(t testing.TB, url string) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: url, Name: "events-test"})
	if err != nil {
		t.Fatalf("opening bus at %s: %v", url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRegistryRedeliveryThroughNATS: the registry delivers the same notification twice
// (it retries when it does not see our answer in time). JetStream de-duplicates on the
// event id, the stream holds one message, and the second reply counts a duplicate.
func TestRegistryRedeliveryThroughNATS(t *testing.T) {
	n := testenv.StartNATS(t)
	b := openBus(t, n.URL)
	m := metrics.New(prometheus.NewRegistry())
	r, err := New(testPipelines(), allSecrets(), b, WithMetrics(m), WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h := &harness{srv: srv, metrics: m}

	body := readTestdata(t, "registry", "push-by-tag.json")
	for i, want := range []Summary{{Accepted: 1}, {Duplicates: 1}} {
		got := h.post(t, registryPath, body, registryHeader())
		if got.status != http.StatusOK {
			t.Fatalf("delivery %d: got status %d (%s), want 200", i+1, got.status, got.body)
		}
		if diff := cmp.Diff(want, got.summary(t)); diff != "" {
			t.Errorf("delivery %d summary (-want +got):\n%s", i+1, diff)
		}
	}
	// A source push redelivered by GitHub goes the same way.
	push := readTestdata(t, "source", "github-push.json")
	for i, want := range []Summary{{Accepted: 1}, {Duplicates: 1}} {
		got := h.post(t, githubPath, push, githubHeader("push", push))
		if got.status != http.StatusOK || got.summary(t) != want {
			t.Fatalf("github delivery %d: got status %d (%s), want 200 %+v", i+1, got.status, got.body, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := b.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("promoter.events.>"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]uint64{types.SubjectRegistryPush: 1, types.SubjectSourceChanged: 1}, info.State.Subjects); diff != "" {
		t.Errorf("messages per subject in %s (-want +got):\n%s", bus.StreamEvents, diff)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, types.SubjectRegistryPush)
	if err != nil {
		t.Fatal(err)
	}
	if id := msg.Header.Get("Nats-Msg-Id"); id != capturedPushID {
		t.Errorf("got Nats-Msg-Id %q, want the registry event id %q", id, capturedPushID)
	}
	var stored types.RegistryPush
	if err := json.Unmarshal(msg.Data, &stored); err != nil {
		t.Fatalf("decoding stored message %s: %v", msg.Data, err)
	}
	if diff := cmp.Diff(capturedPush(), stored); diff != "" {
		t.Errorf("stored registry push (-want +got):\n%s", diff)
	}
	if kept, dup := h.count("registry", "push", "kept"), h.count("registry", "push", "duplicate"); kept != 1 || dup != 1 {
		t.Errorf("got kept=%v duplicate=%v, want 1 and 1", kept, dup)
	}
}
