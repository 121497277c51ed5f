package events_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestRegistryRedeliveryThroughNATS: the registry delivers the same notification twice
// (it retries when it does not see our answer in time). JetStream de-duplicates on the
// event id, the stream holds one message, and the second reply counts a duplicate.
func TestRegistryRedeliveryThroughNATS(t *testing.T) {
	const token = "registry-s3cret"
	b := bustest.Start(t, bus.WithName("events-test"))
	m := metrics.New(prometheus.NewRegistry())
	pipelines := []types.Pipeline{{
		Name: "web", Platforms: []types.Platform{types.MustPlatform("linux/amd64"), types.MustPlatform("linux/arm64")},
		Staging: "staging.example:5000/acme/web", ArchTag: "{revision}-{arch}",
	}}
	r, err := events.New(pipelines, events.Secrets{"registry": token}, b, events.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	body, err := os.ReadFile(filepath.Join("testdata", "registry", "push-by-tag.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []events.Summary{{Accepted: 1}, {Duplicates: 1}} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/events/registry", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", events.EnvelopeMediaType)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("delivery %d: got status %d (%s), want 200", i+1, resp.StatusCode, reply)
		}
		var got events.Summary
		if err := json.Unmarshal(reply, &got); err != nil {
			t.Fatalf("delivery %d: reply %q: %v", i+1, reply, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("delivery %d summary (-want +got):\n%s", i+1, diff)
		}
	}

	msgs := bustest.Stored(t, b, bus.StreamEvents, "promoter.events.>")
	if diff := cmp.Diff(map[string]uint64{types.SubjectRegistryPush: 1}, bustest.Subjects(msgs)); diff != "" {
		t.Errorf("messages per subject in %s (-want +got):\n%s", bus.StreamEvents, diff)
	}
	if len(msgs) == 0 {
		t.Fatal("no message stored")
	}
	msg := msgs[len(msgs)-1]
	const eventID = "01a20694-82a0-7e6f-a31a-5cfd7e8ecf96"
	if msg.MsgID != eventID {
		t.Errorf("got Nats-Msg-Id %q, want the registry event id %q", msg.MsgID, eventID)
	}
	var stored types.RegistryPush
	if err := json.Unmarshal(msg.Data, &stored); err != nil {
		t.Fatalf("decoding stored message %s: %v", msg.Data, err)
	}
	want := types.RegistryPush{
		ID: eventID, Pipeline: "web", Revision: "abc123", Platform: types.MustPlatform("linux/amd64"), Tag: "abc123-amd64",
		Digest:    "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e",
		MediaType: "application/vnd.docker.distribution.manifest.v2+json",
		Timestamp: time.Date(2026, 11, 23, 4, 5, 25, 792946351, time.UTC),
	}
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("stored registry push (-want +got):\n%s", diff)
	}
	for outcome, want := range map[string]float64{"kept": 1, "duplicate": 1} {
		if got := testutil.ToFloat64(m.EventsReceived.WithLabelValues("registry", "push", outcome, "")); got != want {
			t.Errorf("got promoter_events_received_total{registry,push,%s} = %v, want %v", outcome, got, want)
		}
	}
}
