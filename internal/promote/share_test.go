package promote

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// gated holds the source's manifest reads until open is closed, and counts its blob reads.
type gated struct {
	host  string
	open  chan struct{}
	mu    sync.Mutex
	blobs map[string]int
}

func (g *gated) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == g.host && r.Method == http.MethodGet {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			<-g.open
		case strings.Contains(r.URL.Path, "/blobs/"):
			g.mu.Lock()
			g.blobs[r.URL.Path]++
			g.mu.Unlock()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestConcurrentPromotionsShareBlobReads: promotions of one source to different
// registries that run at once (the daemon's steps, one per destination) share the read of
// the source and then each blob's download: every blob is read from the source once.
func TestConcurrentPromotionsShareBlobReads(t *testing.T) {
	a, b, c := testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t)
	ctx := context.Background()
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	src := a.Host + "/app:v1"
	ref, err := registry.Client{}.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, registry.Client{}.Remote(ctx)...); err != nil {
		t.Fatal(err)
	}
	tr := &gated{host: a.Host, open: make(chan struct{}), blobs: map[string]int{}}
	p, err := New(registry.Client{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	dsts := []string{b.Host + "/prod/app", c.Host + "/prod/app"}
	errs := make([]error, len(dsts))
	var wg sync.WaitGroup
	for i, dst := range dsts {
		wg.Go(func() {
			_, perrs := p.Promote(ctx, src, []Target{{Ref: dst}})
			errs[i] = perrs[0]
		})
	}
	// Both wait for the one read of the source; then it may go on.
	waitFor(t, time.Minute, "both promotions waiting for the one read of the source", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		call := p.plans[ref.String()]
		return call != nil && call.parts == len(dsts)
	})
	close(tr.open)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("promoting to %s: %v", dsts[i], err)
		}
	}
	want, _ := img.Digest()
	for _, dst := range dsts {
		r, _ := registry.Client{}.ParseReference(dst + ":v1")
		desc, err := remote.Head(r, registry.Client{}.Remote(ctx)...)
		if err != nil || desc.Digest != want {
			t.Errorf("%s:v1: %v, %v; want %s", dst, desc, err, want)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.blobs) != 4 { // 3 layers and the config
		t.Errorf("source blobs read: %v, want the 4 of the image", tr.blobs)
	}
	for path, n := range tr.blobs {
		if n != 1 {
			t.Errorf("GET %s: %d times, want once for both promotions", path, n)
		}
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
	}
}
