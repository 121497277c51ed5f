package merge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestAStaleReadKeepsTheOtherDigest: two pushes of one revision are handled at once, and
// the handler that writes second read the registry before the other's tag was there. It
// must not erase the digest the first recorded: the revision merges without waiting for
// the reconciler. (Found in e2e: promoter dev took 30 s instead of 2 about once in six.)
// The stale read is a proxy in front of the real registry that answers 404 for the arm64
// tag once.
func TestAStaleReadKeepsTheOtherDigest(t *testing.T) {
	f := newFixture(t)
	host, _, _ := strings.Cut(f.repo, "/")
	target, _ := url.Parse("http://" + host)
	var hide atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/manifests/r1-arm64") && hide.Add(-1) >= 0 {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	p := f.p
	p.Staging = types.Repository(strings.TrimPrefix(proxy.URL, "http://") + "/team/app")
	m, err := New(f.store, registry.Client{}, []types.Pipeline{p}, WithMetrics(f.m), WithOwner("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	amd := f.push(t, "r1", "linux/amd64", "linux/amd64", t1)
	arm := f.push(t, "r1", "linux/arm64", "linux/arm64", t1)

	// The arm64 push is recorded while amd64's handler has not written yet...
	r, err := m.store.Update(ctx, "app", "r1", func(r *types.Revision) error {
		r.ExpectPlatforms(p.ArchTags("r1"))
		_, err := r.RecordDigests(string(p.Staging), p.Keys(), map[string]string{"linux/arm64": arm.Digest}, time.Now())
		return err
	})
	if err != nil || r.Phase != types.PhaseWaiting {
		t.Fatalf("recording arm64: %v %+v", err, r)
	}
	// ...whose read of the registry missed the arm64 tag.
	hide.Store(1)
	got, err := m.HandlePush(ctx, amd)
	if err != nil {
		t.Fatal(err)
	}
	if hide.Load() >= 0 {
		t.Fatal("the proxy never hid the arm64 tag: the test did not test a stale read")
	}
	if got == nil || got.Phase != types.PhaseMerged || got.Platforms["linux/arm64"].Digest != arm.Digest {
		t.Fatalf("after the stale read: %+v, want merged with arm64 %s", got, arm.Digest)
	}
}

// TestADeletedTagIsForgotten: a tag absent on the second read too was deleted, and its
// digest is forgotten before the merge, as the registry says.
func TestADeletedTagIsForgotten(t *testing.T) {
	f := newFixture(t)
	m := f.merger()
	ctx := context.Background()
	arm := f.push(t, "r2", "linux/arm64", "linux/arm64", t1)
	if _, err := m.HandlePush(ctx, arm); err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(f.repo+"@"+arm.Digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(d); err != nil {
		t.Fatal(err)
	}
	amd := f.push(t, "r2", "linux/amd64", "linux/amd64", t1)
	r, err := m.HandlePush(ctx, amd)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != types.PhaseWaiting || r.Platforms["linux/arm64"].Digest != "" || r.Platforms["linux/amd64"].Digest != amd.Digest {
		t.Fatalf("state %+v, want waiting with arm64 forgotten", r)
	}
}
