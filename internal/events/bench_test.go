package events

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/promoter-dev/promoter/internal/bus"
)

// noopPublisher acknowledges everything at once: the benchmark then measures the receiver.
type noopPublisher struct{}

func (noopPublisher) Publish(context.Context, string, string, any) (bool, error) { return false, nil }

// benchBody is an envelope of n kept pushes (the expensive path: decoded, matched,
// validated, published) whose event ids contain "@@" for the caller to make unique.
func benchBody(b *testing.B, n int) []byte {
	b.Helper()
	base := capturedEvent(b, "push-by-tag.json")
	events := make([]map[string]any, n)
	for i := range events {
		tag := "abc123-amd64"
		if i%2 == 1 {
			tag = "abc123-arm64"
		}
		events[i] = with(b, base, "id", fmt.Sprintf("bench-@@-%d", i), "target.tag", tag)
	}
	return envelopeOf(b, events...)
}

func runRegistryBench(b *testing.B, pub bus.Publisher, events int, uniqueIDs bool) {
	r, err := New(testPipelines(), allSecrets(), pub)
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	tmpl := benchBody(b, events)
	hdr := registryHeader()
	b.SetBytes(int64(len(tmpl)))
	b.ReportAllocs()
	iter := 0
	for b.Loop() {
		body := tmpl
		if uniqueIDs {
			body = bytes.ReplaceAll(tmpl, []byte("@@"), strconv.AppendInt(nil, int64(iter), 10))
		}
		req := httptest.NewRequest(http.MethodPost, registryPath, bytes.NewReader(body))
		req.Header = hdr
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("got status %d: %s", rec.Code, rec.Body)
		}
		iter++
	}
	b.ReportMetric(float64(iter*events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRegistryWebhook measures the registry receiver alone (no-op publisher).
func BenchmarkRegistryWebhook(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			runRegistryBench(b, noopPublisher{}, n, false)
		})
	}
}

// BenchmarkRegistryWebhookNATS publishes to a real embedded JetStream server (file
// storage), every event with a new id, so each one is stored and acknowledged.
func BenchmarkRegistryWebhookNATS(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			bs, err := bus.Open(context.Background(), bus.WithStoreDir(b.TempDir()), bus.WithName("events-bench"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = bs.Close() })
			if err := bs.WaitReady(context.Background()); err != nil {
				b.Fatal(err)
			}
			runRegistryBench(b, bs, n, true)
		})
	}
}
