package promote_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/faultproxy"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPromoteAllReadsEachBlobOnce: promoting to several registries reads each source blob
// once and streams it to all of them; a destination that holds the image already, and
// one on the source's registry (mounted), read nothing.
func TestPromoteAllReadsEachBlobOnce(t *testing.T) {
	a, b, c, d := testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 4, layerSize: 512 << 10})
	ctx := context.Background()
	// d has the whole image already.
	if _, err := promoteOne(ctx, newPromoter(t, registry.Client{}), f.ref, promote.Target{Ref: d.Host + "/prod/app"}); err != nil {
		t.Fatal(err)
	}
	seen := &requestCounter{base: http.DefaultTransport, n: map[string]int{}}
	p := newPromoter(t, registry.Client{Transport: seen})
	dsts := []string{b.Host + "/prod/app", c.Host + "/prod/app", d.Host + "/prod/app", a.Host + "/prod/app"}
	results, errs := p.Promote(ctx, f.ref, targets(dsts...))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("promoting to %s: %v", dsts[i], err)
		}
		if got := digestOf(t, dsts[i]+":v1"); got != f.index.String() {
			t.Errorf("%s:v1 is %s, want %s", dsts[i], got, f.index)
		}
		checkAttached(t, dsts[i], f)
	}
	if results[0].Uploaded == 0 || results[1].Uploaded != results[0].Uploaded || results[2].Uploaded != 0 || results[3].Mounted == 0 {
		t.Errorf("uploaded %d, %d, %d, mounted %d; want the same to b and c, none to d, mounts on a",
			results[0].Uploaded, results[1].Uploaded, results[2].Uploaded, results[3].Mounted)
	}
	reads := 0
	seen.mu.Lock()
	for req, n := range seen.n {
		if strings.HasPrefix(req, "GET /v2/app/blobs/") {
			reads++
			if n != 1 {
				t.Errorf("%s sent %d times, want once for all destinations", req, n)
			}
		}
	}
	seen.mu.Unlock()
	// Each child's config and layers (the index's children, signatures and referrers
	// add more); every one of them read once.
	if reads < 2*(4+1) {
		t.Errorf("%d source blobs read, want at least the %d of the two children", reads, 2*(4+1))
	}
}

// TestPromoteAllSharedReadSurvivesAFailingDestination: a destination that fails before
// its blobs (an immutable tag) and one whose uploads break (a faulty proxy) hold up no
// other: the shared reads go on without them, a broken part is retried on its own, and
// every healthy destination is complete.
func TestPromoteAllSharedReadSurvivesAFailingDestination(t *testing.T) {
	a, b, c, locked := testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 4, layerSize: 256 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	other, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, locked.Host+"/prod/app:v1"), other, registry.Client{}.Remote(ctx)...); err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.Start(t, c.URL, faultproxy.Config{Errors: 0.10, Drops: 0.10, Seed: 11})
	p := newPromoter(t, registry.Client{Retry: &registry.RetryPolicy{MaxAttempts: 8, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	dsts := []string{b.Host + "/prod/app", proxy.Host + "/prod/app", locked.Host + "/prod/app"}
	_, errs := p.Promote(ctx, f.ref, targets(dsts...))
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("healthy destinations: %v; through faults (errors=%d drops=%d): %v", errs[0],
			proxy.Stats.Errors.Load(), proxy.Stats.Drops.Load(), errs[1])
	}
	if !errors.Is(errs[2], types.ErrTagImmutable) {
		t.Errorf("the destination with another image under v1: %v, want ErrTagImmutable", errs[2])
	}
	if proxy.Stats.Errors.Load()+proxy.Stats.Drops.Load() == 0 {
		t.Errorf("the proxy injected no fault")
	}
	for _, dst := range []string{b.Host + "/prod/app", c.Host + "/prod/app"} {
		if got := digestOf(t, dst+":v1"); got != f.index.String() {
			t.Errorf("%s:v1 is %s, want %s", dst, got, f.index)
		}
		checkAttached(t, dst, f)
	}
}

// TestPromoteAllDoesNotWaitLongForASickDestination: a destination whose registry refuses
// every blob check (429, retried) holds up the shared reads of a healthy one for the join
// grace only: the healthy destination has all its blobs while the sick one is still being
// refused, and completes; the sick one fails on its own.
func TestPromoteAllDoesNotWaitLongForASickDestination(t *testing.T) {
	a, b, c := testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 2, layerSize: 64 << 10})
	sick := faultproxy.Start(t, c.URL, faultproxy.Config{Throttles: 1, RetryAfter: 1, Match: func(r *http.Request) bool {
		return r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/")
	}})
	healthy := b.Host + "/prod/app"
	var atHealthyDone atomic.Int64
	atHealthyDone.Store(-1)
	p := newPromoter(t, registry.Client{Retry: &registry.RetryPolicy{MaxAttempts: 2, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}},
		promote.WithProgress(func(e promote.Event) {
			if strings.HasPrefix(e.Destination, healthy) && e.Item.Kind == promote.KindBlob && e.BlobsDone == e.BlobsTotal {
				atHealthyDone.Store(sick.Stats.Throttles.Load())
			}
		}))
	_, errs := p.Promote(context.Background(), f.ref, targets(healthy, sick.Host+"/prod/app"))
	if errs[0] != nil {
		t.Fatalf("the healthy destination: %v", errs[0])
	}
	if errs[1] == nil {
		t.Fatalf("the sick destination succeeded through %d refusals", sick.Stats.Throttles.Load())
	}
	if got := digestOf(t, healthy+":v1"); got != f.index.String() {
		t.Errorf("%s:v1 is %s, want %s", healthy, got, f.index)
	}
	done, end := atHealthyDone.Load(), sick.Stats.Throttles.Load()
	if done < 0 || done >= end {
		t.Errorf("the healthy destination had its blobs after %d of the sick one's %d refusals; want it done while refusals went on", done, end)
	}
}
