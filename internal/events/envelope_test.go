package events

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// pushEnvelope is a distribution notification of n distinct manifest pushes by tag to the
// web pipeline, as compact as the registry writes them, with ids prefix-0 ... The events
// at the indexes for which blob is true are blob pushes instead (acknowledged, ignored).
func pushEnvelope(t testing.TB, prefix string, n int, blob func(i int) bool) []byte {
	t.Helper()
	type target struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Repository string `json:"repository"`
		Tag        string `json:"tag,omitempty"`
	}
	type event struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
		Action    string `json:"action"`
		Target    target `json:"target"`
	}
	events := make([]event, n)
	for i := range events {
		e := event{
			ID: fmt.Sprintf("%s-%d", prefix, i), Timestamp: "2026-11-23T04:05:25Z", Action: "push",
			Target: target{
				MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: fmt.Sprintf("sha256:%064x", i),
				Repository: "acme/web", Tag: fmt.Sprintf("r%05d-amd64", i),
			},
		}
		if blob != nil && blob(i) {
			e.Target.MediaType, e.Target.Tag = "application/octet-stream", ""
		}
		events[i] = e
	}
	b, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openEmbeddedBus opens the bus the way the daemon does by default: an embedded server
// that fsyncs every message before acknowledging it.
func openEmbeddedBus(t testing.TB) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.WithStoreDir(t.TempDir()), bus.WithName("events-envelope"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// infoLines are the lines logged at info or above.
func infoLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l != "" && !strings.Contains(l, "level=DEBUG") {
			out = append(out, l)
		}
	}
	return out
}

// TestEnvelopeOf10000EventsStoredOnce reproduces the load finding of issue 24: a
// registry sends one notification of 10,000 pushes. It is answered 2xx once all 10,000 are
// stored, each exactly once; sent again, it stores nothing new (every event is a
// duplicate); and each request logs one line at info, not one or two per event. How long
// the answer took is logged, not asserted (BenchmarkEnvelope10000 measures it).
func TestEnvelopeOf10000EventsStoredOnce(t *testing.T) {
	const n = 10000
	b := openEmbeddedBus(t)
	log, lines := logTo()
	m := metrics.New(prometheus.NewRegistry())
	r, err := New(testPipelines(), allSecrets(), b, WithLogger(log), WithMetrics(m), WithMaxBodyBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	h := &harness{srv: httptest.NewServer(mux), metrics: m}
	t.Cleanup(h.srv.Close)
	body := pushEnvelope(t, "envelope", n, nil)

	logged := 0
	for _, c := range []struct {
		delivery string
		want     Summary
	}{
		{"first delivery", Summary{Accepted: n}},
		{"the same envelope again", Summary{Duplicates: n}},
	} {
		start := time.Now()
		got := h.post(t, registryPath, body, registryHeader())
		took := time.Since(start)
		if got.status != http.StatusOK {
			t.Fatalf("%s: got %d %.200s, want 200", c.delivery, got.status, got.body)
		}
		t.Logf("%s: %d events (%d bytes) answered in %s", c.delivery, n, len(body), took.Round(time.Millisecond))
		if diff := cmp.Diff(c.want, got.summary(t)); diff != "" {
			t.Errorf("%s: summary (-want +got):\n%s", c.delivery, diff)
		}
		all := lines.lines()
		if info := infoLines(all[logged:]); len(info) != 1 {
			t.Errorf("%s: %d lines logged at info, want 1 (a summary of the request); the first ones:\n%s",
				c.delivery, len(info), strings.Join(info[:min(len(info), 5)], "\n"))
		}
		logged = len(all)
	}

	stored := bustest.Stored(t, b, bus.StreamEvents, types.SubjectRegistryPush)
	if got := uint64(len(stored)); got != n {
		t.Errorf("the stream holds %d registry pushes, want %d", got, n)
	}
	// Each id once: the first and the last event are where the body put them.
	if len(stored) > 0 {
		for i, id := range map[int]string{0: "envelope-0", len(stored) - 1: fmt.Sprintf("envelope-%d", n-1)} {
			if got := stored[i].MsgID; got != id {
				t.Errorf("message %d has id %q, want %q", stored[i].Seq, got, id)
			}
		}
	}
	for outcome, want := range map[string]float64{"kept": n, "duplicate": n} {
		if got := h.count("registry", "push", outcome); got != want {
			t.Errorf("promoter_events_received_total{registry,push,%s} = %v, want %v", outcome, got, want)
		}
	}
}

// TestLogLinesPerRequestBounded: whatever a notification holds, its request logs one
// summary line at info (when it kept anything) and at most the rate-limited "event
// ignored" lines; every event's own line is at debug.
func TestLogLinesPerRequestBounded(t *testing.T) {
	const n = 1000
	tests := []struct {
		name string
		blob func(i int) bool
		want Summary
	}{
		{"every event kept", nil, Summary{Accepted: n}},
		{"every event ignored", func(int) bool { return true }, Summary{Ignored: n}},
		{"half of them ignored", func(i int) bool { return i%2 == 1 }, Summary{Accepted: n / 2, Ignored: n / 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
				lines := &logBuffer{}
				log := slog.New(slog.NewTextHandler(lines, &slog.HandlerOptions{Level: level}))
				h := newHarness(t, allSecrets(), WithLogger(log))
				got := h.post(t, registryPath, pushEnvelope(t, "bounded", n, tc.blob), registryHeader())
				if got.status != http.StatusOK {
					t.Fatalf("got %d %.200s, want 200", got.status, got.body)
				}
				if diff := cmp.Diff(tc.want, got.summary(t)); diff != "" {
					t.Errorf("summary (-want +got):\n%s", diff)
				}
				info := infoLines(lines.lines())
				// A summary, the ignored events' lines within their rate limit.
				if max := 1 + min(tc.want.Ignored, ignoredLogBurst); len(info) > max {
					t.Errorf("at %s: %d lines at info, want at most %d; the first ones:\n%s",
						level, len(info), max, strings.Join(info[:min(len(info), 5)], "\n"))
				}
				if level != slog.LevelDebug || tc.want.Accepted == 0 {
					continue
				}
				// At debug every kept event has its line.
				var kept int
				for _, l := range lines.lines() {
					if strings.Contains(l, "level=DEBUG") && strings.Contains(l, "outcome=kept") {
						kept++
					}
				}
				if kept != tc.want.Accepted {
					t.Errorf("at debug: %d lines of kept events, want %d", kept, tc.want.Accepted)
				}
			}
		})
	}
}

// BenchmarkEnvelope10000 is the answer time of a 10,000-event distribution notification
// stored on the embedded server (fsync before every acknowledgement, as the daemon runs
// it), logging at info: new (every event stored) and duplicate (the same envelope
// again, every event de-duplicated).
func BenchmarkEnvelope10000(b *testing.B) {
	const n = 10000
	for _, mode := range []string{"new", "duplicate"} {
		b.Run(mode, func(b *testing.B) {
			bs := openEmbeddedBus(b)
			log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
			r, err := New(testPipelines(), allSecrets(), bs, WithLogger(log), WithMaxBodyBytes(4<<20))
			if err != nil {
				b.Fatal(err)
			}
			mux := http.NewServeMux()
			r.Register(mux)
			post := func(body []byte) {
				req := httptest.NewRequest(http.MethodPost, registryPath, strings.NewReader(string(body)))
				req.Header = registryHeader()
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("got status %d: %.200s", rec.Code, rec.Body)
				}
			}
			same := pushEnvelope(b, "same", n, nil)
			if mode == "duplicate" {
				post(same)
			}
			iter := 0
			for b.Loop() {
				body := same
				if mode == "new" {
					b.StopTimer()
					body = pushEnvelope(b, fmt.Sprint("new", iter), n, nil)
					b.StartTimer()
				}
				post(body)
				iter++
			}
			b.ReportMetric(float64(iter*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
