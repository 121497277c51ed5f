package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// paths records the requests that go through it, as "METHOD /path".
type paths struct {
	mu   sync.Mutex
	seen []string
}

func (p *paths) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.URL.Path)
	p.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// take returns the requests seen since the last take, pings left out.
func (p *paths) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.seen {
		if s != "GET /v2/" {
			out = append(out, s)
		}
	}
	p.seen = nil
	return out
}

func referrersAPICalls(reqs []string) int {
	n := 0
	for _, r := range reqs {
		if strings.Contains(r, "/referrers/") {
			n++
		}
	}
	return n
}

// TestReferrersRemembersARegistryWithoutTheAPI: distribution's registry has no referrers
// API. A reusing client's first listing finds that out (the API, then the fallback tag);
// later ones ask for the fallback tag only and find the same: the referrer pushed with a
// subject, or nothing for a subject without one. A plain client asks the API every time.
func TestReferrersRemembersARegistryWithoutTheAPI(t *testing.T) {
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	plain := registry.Client{Insecure: []string{reg.Host}}
	repo, err := plain.ParseRepository(reg.Host + "/ref/app")
	if err != nil {
		t.Fatal(err)
	}
	push := func(img v1.Image) v1.Descriptor {
		t.Helper()
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(repo.Digest(d.String()), img, plain.Remote(ctx)...); err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(repo.Digest(d.String()), plain.Remote(ctx)...)
		if err != nil {
			t.Fatal(err)
		}
		return *desc
	}
	subject, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	lonely, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	sd, ld := push(subject), push(lonely)
	artifact := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.promoter.test")
	rd := push(mutate.Subject(artifact, sd).(v1.Image))

	for _, tc := range []struct {
		name     string
		reusing  bool
		wantAPIs []int // calls of the API by each of three listings
	}{
		{"reusing", true, []int{1, 0, 0}},
		{"plain", false, []int{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := &paths{}
			c := registry.Client{Insecure: []string{reg.Host}, Transport: seen}
			if tc.reusing {
				c = c.Reusing(0)
			}
			for i, want := range tc.wantAPIs {
				idx, err := c.Referrers(repo.Digest(sd.Digest.String()), c.Remote(ctx)...)
				if err != nil {
					t.Fatal(err)
				}
				im, err := idx.IndexManifest()
				if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Digest != rd.Digest {
					t.Fatalf("listing %d: %+v, %v; want the one referrer %s", i, im, err, rd.Digest)
				}
				if got := referrersAPICalls(seen.take()); got != want {
					t.Errorf("listing %d asked the referrers API %d times, want %d", i, got, want)
				}
			}
			idx, err := c.Referrers(repo.Digest(ld.Digest.String()), c.Remote(ctx)...)
			if err != nil {
				t.Fatal(err)
			}
			if im, err := idx.IndexManifest(); err != nil || len(im.Manifests) != 0 {
				t.Errorf("a subject without referrers: %+v, %v; want none", im, err)
			}
		})
	}
}

// TestReferrersKeepsUsingTheAPI: a registry that answers the referrers API is asked it
// every time, by a reusing client too.
func TestReferrersKeepsUsingTheAPI(t *testing.T) {
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":10,"artifactType":"application/vnd.promoter.test"}]}`
	var api int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(r.URL.Path, "/v2/ref/app/referrers/"):
			mu.Lock()
			api++
			mu.Unlock()
			w.Header().Set("Content-Type", string(types.OCIImageIndex))
			_, _ = w.Write([]byte(index))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := registry.Client{Insecure: []string{host}}.Reusing(0)
	repo, err := c.ParseRepository(host + "/ref/app")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		idx, err := c.Referrers(repo.Digest("sha256:"+strings.Repeat("b", 64)), c.Remote(ctx)...)
		if err != nil {
			t.Fatal(err)
		}
		if im, err := idx.IndexManifest(); err != nil || len(im.Manifests) != 1 {
			t.Fatalf("listing %d: %+v, %v", i, im, err)
		}
	}
	if api != 3 {
		t.Errorf("the referrers API was asked %d times, want 3", api)
	}
}
