package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/notifications"
)

// IngestResult is the webhook ingest at one concurrency.
type IngestResult struct {
	Senders int
	// N requests were measured, each one envelope of one event; Failed of them were not
	// answered 200 with the event accepted.
	N, Failed int
	P50, P99  time.Duration
	// Rate is accepted events per second of wall time.
	Rate float64
}

// ingestBody is a distribution notification envelope of one manifest push by tag (the
// format of internal/events/testdata/registry/push-by-tag.json), distinct by its event id,
// revision and digest, to the ingest pipeline's staging repository: each one is kept and
// stored on the bus before the 2xx. The daemon consumes them meanwhile, as it would: the
// merger finds none of the tags in staging.
func ingestBody(stagingHost string, n uint64) ([]byte, error) {
	rev := fmt.Sprintf("%040x", n)
	dg := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(rev)))
	ev := map[string]any{
		"id":        fmt.Sprintf("bench-ingest-%d", n),
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"action":    notifications.EventActionPush,
		"target": map[string]any{
			"mediaType":  "application/vnd.oci.image.manifest.v1+json",
			"digest":     dg,
			"size":       423,
			"length":     423,
			"repository": ingestRepo,
			"url":        fmt.Sprintf("http://%s/v2/%s/manifests/%s", stagingHost, ingestRepo, dg),
			"tag":        rev + "-amd64",
		},
		"request": map[string]any{"id": fmt.Sprintf("bench-req-%d", n), "addr": "127.0.0.1:1", "host": stagingHost, "method": "PUT", "useragent": "promoter-bench"},
		"actor":   map[string]any{},
		"source":  map[string]any{"addr": "bench"},
	}
	return json.Marshal(map[string]any{"events": []any{ev}})
}

// ingest posts events envelopes from senders goroutines sharing one transport, after a
// warm-up of a tenth as many, and measures each request from sending to the body read.
// Each round (of one sender count) posts events of its own, none the daemon has seen.
func ingest(ctx context.Context, daemonURL, stagingHost string, senders, events, round int) (IngestResult, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = senders
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	base := uint64(round)<<40 | uint64(senders)<<32

	post := func(n uint64) (time.Duration, bool, error) {
		body, err := ingestBody(stagingHost, n)
		if err != nil {
			return 0, false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, daemonURL+"/v1/events/registry", bytes.NewReader(body))
		if err != nil {
			return 0, false, err
		}
		req.Header.Set("Content-Type", notifications.EventsMediaType)
		req.Header.Set("Authorization", "Bearer "+registryToken)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, false, nil
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		var sum struct{ Accepted int }
		ok := resp.StatusCode == http.StatusOK && json.Unmarshal(b, &sum) == nil && sum.Accepted == 1
		return took, ok, nil
	}
	run := func(first uint64, count int) ([]time.Duration, int, time.Duration, error) {
		var next atomic.Int64
		var failed atomic.Int64
		lat := make([]time.Duration, count)
		var wg sync.WaitGroup
		errc := make(chan error, senders)
		start := time.Now()
		for range senders {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(count) {
						return
					}
					took, ok, err := post(first + uint64(i))
					if err != nil {
						errc <- err
						return
					}
					lat[i] = took
					if !ok {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(errc)
		return lat, int(failed.Load()), elapsed, <-errc
	}
	if _, _, _, err := run(base|1<<31, max(events/10, senders)); err != nil {
		return IngestResult{}, err
	}
	lat, failed, elapsed, err := run(base, events)
	if err != nil {
		return IngestResult{}, err
	}
	if failed == events {
		return IngestResult{}, fmt.Errorf("none of %d events was accepted", events)
	}
	s := Summarize(lat)
	return IngestResult{Senders: senders, N: events, Failed: failed, P50: s.P50, P99: s.P99,
		Rate: float64(events-failed) / elapsed.Seconds()}, nil
}
