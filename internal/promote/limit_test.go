package promote_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// slowUploads fronts a registry and answers each blob upload's PUT only after a delay,
// before reading its body (small bodies then sit in the socket buffers, written but not
// answered), counting the most PUTs in flight at once.
type slowUploads struct {
	*httptest.Server
	mu            sync.Mutex
	inFlight, max int
}

func startSlowUploads(t *testing.T, target string, delay time.Duration) *slowUploads {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		// Keep the client on the proxy: the registry's upload locations are absolute.
		if loc, err := url.Parse(resp.Header.Get("Location")); err == nil && loc.Host == u.Host {
			loc.Scheme, loc.Host = "", ""
			resp.Header.Set("Location", loc.String())
		}
		return nil
	}
	s := &slowUploads{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
			rp.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		s.inFlight++
		s.max = max(s.max, s.inFlight)
		s.mu.Unlock()
		time.Sleep(delay) // the scenario: a destination slow to answer
		rp.ServeHTTP(w, r)
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

// TestJobsBoundUploadsInFlight: WithJobs bounds the requests in flight per destination
// host until the destination answers, not only until the body is written, whether a
// destination reads the source for itself or shares a read with other destinations.
func TestJobsBoundUploadsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		targets []string
	}{
		{"one destination", []string{"prod/app"}},
		{"two destinations sharing each blob's read", []string{"prod/app", "mirror/app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
			f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 6, layerSize: 1024})
			slow := startSlowUploads(t, b.URL, 200*time.Millisecond)
			host := strings.TrimPrefix(slow.URL, "http://")
			var refs []string
			for _, r := range tc.targets {
				refs = append(refs, host+"/"+r)
			}
			const jobs = 2
			_, errs := newPromoter(t, registry.Client{}, promote.WithJobs(jobs)).Promote(t.Context(), f.ref, targets(refs...))
			for i, err := range errs {
				if err != nil {
					t.Fatalf("promoting to %s: %v", refs[i], err)
				}
			}
			slow.mu.Lock()
			defer slow.mu.Unlock()
			if slow.max == 0 || slow.max > jobs {
				t.Errorf("at most %d blob uploads were in flight at once to %s, want 1 to %d (WithJobs)", slow.max, host, jobs)
			}
		})
	}
}
