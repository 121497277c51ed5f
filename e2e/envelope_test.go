package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestEnvelopeOf10000Events reproduces the first load finding of issue 24 on the real
// `promoter serve` (embedded NATS, fsync before every acknowledgement, logging at info):
// one distribution notification of 10,000 distinct manifest pushes, 2.6 MB, under a
// 4 MiB events.maxBodyBytes. It must be answered 2xx with every event accepted, each
// counted once; the same notification again must store nothing new (every event a
// duplicate); and each request must log one line, not one or two per event. The answer
// times are logged, never asserted (BenchmarkEnvelope10000 in internal/events measures
// them).
func TestEnvelopeOf10000Events(t *testing.T) {
	const n = 10000
	bin := buildPromoter(t)
	dir := t.TempDir()
	staging := testenv.StartRegistry(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	d, logPath := startServeBinary(t, bin, dir, listen, newDaemonConfig(t, withListeners(listen, metrics, "", filepath.Join(dir, "data")), withMaxBodyBytes(4194304),
		withPipeline(pipelineConfig{Name: "app", Platforms: bothArches, Staging: staging.Host + "/team/app"})), 0)

	body := distributionEnvelope(t, staging.Host, n)
	client := &http.Client{Timeout: 60 * time.Second}
	for _, delivery := range []struct {
		name string
		want string
	}{
		{"first delivery", fmt.Sprintf(`{"accepted":%d,"ignored":0,"duplicates":0}`, n)},
		{"the same notification again", fmt.Sprintf(`{"accepted":0,"ignored":0,"duplicates":%d}`, n)},
	} {
		before := receiverLines(readFile(logPath))
		req, _ := http.NewRequest(http.MethodPost, d.URL+"/v1/events/registry", bytes.NewReader(body))
		req.Header = notifyHeaders()
		req.Header.Set("Content-Type", "application/vnd.docker.distribution.events.v2+json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", delivery.name, err)
		}
		reply, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		t.Logf("%s: %d events (%d bytes) answered %s in %s", delivery.name, n, len(body), resp.Status, took.Round(time.Millisecond))
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(reply)) != delivery.want {
			t.Fatalf("%s: got %s %.300s, want 200 %s", delivery.name, resp.Status, reply, delivery.want)
		}
		// The summary line is written before the answer.
		if lines := receiverLines(readFile(logPath))[len(before):]; len(lines) != 1 {
			t.Errorf("%s: the receiver logged %d lines, want 1 (a summary of the request); the first ones:\n%s",
				delivery.name, len(lines), strings.Join(lines[:min(len(lines), 5)], "\n"))
		}
	}
	m, err := scrapeAll(metrics)
	if err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]int{"kept": n, "duplicate": n} {
		series := fmt.Sprintf(`promoter_events_received_total{action="push",outcome=%q,reason="",source="registry"} %d`, outcome, want)
		if !strings.Contains(m, series) {
			t.Errorf("no %s in the daemon's metrics", series)
		}
	}
	if t.Failed() {
		t.Logf("daemon log (tail):\n%s", lastLinesOf(readFile(logPath), 20))
	}
}

// distributionEnvelope is a notification of n distinct manifest pushes by tag to
// team/app on host, as distribution writes them (request and actor fields included).
func distributionEnvelope(t *testing.T, host string, n int) []byte {
	t.Helper()
	type target struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Size       int    `json:"size"`
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	}
	type event struct {
		ID        string            `json:"id"`
		Timestamp string            `json:"timestamp"`
		Action    string            `json:"action"`
		Target    target            `json:"target"`
		Request   map[string]string `json:"request"`
		Source    map[string]string `json:"source"`
	}
	events := make([]event, n)
	for i := range events {
		events[i] = event{
			ID: fmt.Sprintf("envelope-%d", i), Timestamp: "2026-12-01T00:00:00Z", Action: "push",
			Target: target{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: fmt.Sprintf("sha256:%064x", i),
				Size: 423, Repository: "team/app", Tag: fmt.Sprintf("r%05d-amd64", i)},
			Request: map[string]string{"host": host, "method": "PUT", "useragent": "buildkit"},
			Source:  map[string]string{"addr": "registry:5000"},
		}
	}
	b, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// receiverLines are the daemon's log lines about registry notifications (the receiver's
// own, source=registry).
func receiverLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "source=registry") {
			out = append(out, l)
		}
	}
	return out
}

// scrapeAll returns the daemon's whole /metrics page.
func scrapeAll(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
