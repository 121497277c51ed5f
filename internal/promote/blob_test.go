package promote_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/faultproxy"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestBlobUploadRetriesHonourRetryAfter: a streamed blob upload cannot be replayed by the
// retrying transport, so a 429 on it is retried by the blob copier, which must wait the
// Retry-After out, and the error it finally returns still carries the Retry-After for the
// caller that schedules the next attempt (the daemon's steps).
func TestBlobUploadRetriesHonourRetryAfter(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 1, layerSize: 64 << 10})
	const retryAfter = time.Second
	proxy := faultproxy.Start(t, b.URL, faultproxy.Config{
		Match:     func(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Query().Get("digest") != "" },
		Throttles: 1, RetryAfter: int(retryAfter / time.Second),
	})
	p := newPromoter(t, registry.Client{Retry: &registry.RetryPolicy{MaxAttempts: 2, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}})
	_, err := promoteOne(context.Background(), p, f.ref, promote.Target{Ref: proxy.Host + "/prod/app"})
	var ra *registry.RetryAfterError
	if !errors.As(err, &ra) || ra.RetryAfter() != retryAfter {
		t.Fatalf("got %v, want an error carrying Retry-After %s", err, retryAfter)
	}
	last := map[string]time.Time{}
	retried := 0
	for _, r := range proxy.Requests() {
		if r.Fault != faultproxy.FaultThrottle {
			continue
		}
		blob := r.Query.Get("digest")
		if prev, ok := last[blob]; ok {
			retried++
			if gap := r.At.Sub(prev); gap < retryAfter {
				t.Errorf("uploads of %s %s apart, want at least the Retry-After %s", blob, gap, retryAfter)
			}
		}
		last[blob] = r.At
	}
	if retried == 0 {
		t.Fatalf("no upload was retried (%d throttled)", proxy.Stats.Throttles.Load())
	}
}
