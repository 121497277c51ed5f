package promote_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/faultproxy"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

func TestPromoteAllCopiesIndexSignaturesAndReferrers(t *testing.T) {
	a, b, c := testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{})
	m := metrics.Discard()
	p := newPromoter(t, registry.Client{}, promote.WithMetrics(m))
	ctx := context.Background()

	dsts := []string{b.Host + "/prod/app", c.Host + "/prod/app"}
	results, errs := p.Promote(ctx, f.ref, targets(dsts...))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("promoting to %s: %v", dsts[i], err)
		}
	}
	for i, dst := range dsts {
		checkCopied(t, dst, f, results[i])
	}
	if got := testutil.ToFloat64(m.Promotions.WithLabelValues("promoted")); got != 2 {
		t.Errorf("promotions{outcome=promoted} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.PromoteBytes.WithLabelValues("uploaded")); got != float64(results[0].Uploaded+results[1].Uploaded) {
		t.Errorf("promote bytes{mode=uploaded} = %v, want %d", got, results[0].Uploaded+results[1].Uploaded)
	}

	// Again: everything is there, nothing moves, every blob byte counts as skipped.
	again, err := promoteOne(ctx, p, f.ref, promote.Target{Ref: dsts[0]})
	if err != nil {
		t.Fatalf("promoting again: %v", err)
	}
	if again.Uploaded != 0 || again.Mounted != 0 || again.Skipped != results[0].Uploaded {
		t.Errorf("second promotion uploaded=%d mounted=%d skipped=%d, want 0, 0, %d", again.Uploaded, again.Mounted, again.Skipped, results[0].Uploaded)
	}
	for _, it := range again.Items {
		if it.Action != promote.Skip {
			t.Errorf("second promotion %s %s: action %s, want skip", it.Kind, it.Ref, it.Action)
		}
	}
	if got := testutil.ToFloat64(m.Promotions.WithLabelValues("skipped")); got != 1 {
		t.Errorf("promotions{outcome=skipped} = %v, want 1", got)
	}
}

// checkCopied checks that dst holds f, as promoter, crane and regctl see it, whole and
// valid, with its blobs uploaded (across registries) by res.
func checkCopied(t *testing.T, dst string, f *fixture, res *promote.Result) {
	t.Helper()
	ctx := context.Background()
	crane, regctl := testenv.Tool(t, "crane"), testenv.Tool(t, "regctl")
	ref := dst + ":v1"
	if got := res.Digest; got != f.index.String() {
		t.Errorf("result digest %s, want %s", got, f.index)
	}
	if got := digestOf(t, ref); got != f.index.String() {
		t.Errorf("%s is %s, want %s", ref, got, f.index)
	}
	if got := run(t, crane, "digest", "--insecure", ref); got != f.index.String() {
		t.Errorf("crane digest %s = %s, want %s", ref, got, f.index)
	}
	if got := run(t, regctl, "image", "digest", "--host", "reg="+strings.Split(dst, "/")[0]+",tls=disabled", ref); got != f.index.String() {
		t.Errorf("regctl image digest %s = %s, want %s", ref, got, f.index)
	}
	r, _ := registry.Client{}.ParseReference(ref)
	idx, err := remote.Index(r, registry.Client{}.Remote(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("destination index %s invalid: %v", ref, err)
	}
	checkAttached(t, dst, f)
	if res.Uploaded == 0 || res.Mounted != 0 {
		t.Errorf("across registries got uploaded=%d mounted=%d, want uploaded>0 mounted=0", res.Uploaded, res.Mounted)
	}
}

func TestPromoteImmutableTag(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{})
	ctx := context.Background()
	m := metrics.Discard()
	p := newPromoter(t, registry.Client{}, promote.WithMetrics(m))

	for _, tag := range []string{"v1", "latest"} {
		other, err := random.Image(100, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := registry.Client{}.ParseReference(b.Host + "/prod/app:" + tag)
		if err := remote.Write(r, other, registry.Client{}.Remote(ctx)...); err != nil {
			t.Fatal(err)
		}
	}
	before := digestOf(t, b.Host+"/prod/app:v1")

	tests := []struct {
		name    string
		dst     string
		mutable []string
		wantErr error
		want    string
	}{
		{name: "immutable tag is refused", dst: b.Host + "/prod/app", wantErr: types.ErrTagImmutable, want: before},
		{name: "mutable list names another tag", dst: b.Host + "/prod/app:v1", mutable: []string{"latest"}, wantErr: types.ErrTagImmutable, want: before},
		{name: "mutable tag moves", dst: b.Host + "/prod/app:latest", mutable: []string{"latest"}, want: f.index.String()},
		{name: "same digest is nothing to do", dst: b.Host + "/prod/app:latest", want: f.index.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := promoteOne(ctx, p, f.ref, promote.Target{Ref: tt.dst, MutableTags: tt.mutable})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				for _, d := range []string{before, f.index.String()} {
					if !strings.Contains(err.Error(), d) {
						t.Errorf("error %q does not name digest %s", err, d)
					}
				}
				var ie *types.TagImmutableError
				if !errors.As(err, &ie) || ie.Existing != before || ie.Want != f.index.String() {
					t.Errorf("got %#v, want types.TagImmutableError{Existing: %s, Want: %s}", ie, before, f.index)
				}
				if res == nil || len(res.Items) != 0 {
					t.Errorf("refused promotion still handled %d items", len(res.Items))
				}
			}
			ref := tt.dst
			if !strings.Contains(ref[strings.LastIndex(ref, "/"):], ":") {
				ref += ":v1"
			}
			if got := digestOf(t, ref); got != tt.want {
				t.Errorf("%s is %s, want %s", ref, got, tt.want)
			}
		})
	}
	if got := testutil.ToFloat64(m.Promotions.WithLabelValues("immutable")); got != 2 {
		t.Errorf("promotions{outcome=immutable} = %v, want 2", got)
	}
}

// TestPromoteDestinationAndTag: a pipeline destination gets the revision tag and moves its
// mutable tags, each with one manifest write; a release tag (ReleaseTarget) is written
// alone and is immutable even when the destination lists it as mutable.
func TestPromoteDestinationAndTag(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "r1", fixtureOpts{})
	src := a.Host + "/app@" + f.index.String()
	ctx := context.Background()
	seen := &requestCounter{base: http.DefaultTransport, n: map[string]int{}}
	p := newPromoter(t, registry.Client{Transport: seen})
	d := types.Destination{To: types.Repository(b.Host + "/prod/app"), MutableTags: []string{"latest"}}
	put := func(tag string) string {
		t.Helper()
		other, err := random.Image(100, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := registry.Client{}.ParseReference(d.To.Tag(tag))
		if err := remote.Write(r, other, registry.Client{}.Remote(ctx)...); err != nil {
			t.Fatal(err)
		}
		return digestOf(t, d.To.Tag(tag))
	}

	if got, err := promoteOne(ctx, p, src, promote.DestinationTarget(d, "r1")); err != nil || got.Digest != f.index.String() {
		t.Fatalf("DestinationTarget: %+v, %v", got, err)
	}
	for _, tag := range []string{"r1", "latest"} {
		if got := digestOf(t, d.To.Tag(tag)); got != f.index.String() {
			t.Errorf("%s is %s, want %s", tag, got, f.index)
		}
	}

	// latest went on to another revision and comes back: that is one manifest written.
	put("latest")
	seen.reset()
	if got, err := promoteOne(ctx, p, src, promote.DestinationTarget(d, "r1")); err != nil || got.Digest != f.index.String() {
		t.Fatalf("DestinationTarget again: %+v, %v", got, err)
	}
	if got, want := seen.writes(), []string{"PUT /v2/prod/app/manifests/latest"}; !slices.Equal(got, want) {
		t.Errorf("moving latest back wrote %v, want %v", got, want)
	}
	if got := digestOf(t, d.To.Tag("latest")); got != f.index.String() {
		t.Errorf("latest is %s, want %s", got, f.index)
	}

	moved := put("latest") // latest went on to another revision
	if got, err := promoteOne(ctx, p, src, promote.ReleaseTarget(d, "v1.2.3")); err != nil || got.Digest != f.index.String() {
		t.Fatalf("ReleaseTarget: %+v, %v", got, err)
	}
	if got := digestOf(t, d.To.Tag("v1.2.3")); got != f.index.String() {
		t.Errorf("v1.2.3 is %s, want %s", got, f.index)
	}
	if got := digestOf(t, d.To.Tag("latest")); got != moved {
		t.Errorf("ReleaseTarget moved latest to %s", got)
	}
	if got, err := promoteOne(ctx, p, src, promote.ReleaseTarget(d, "v1.2.3")); err != nil || got.Digest != f.index.String() {
		t.Errorf("ReleaseTarget again: %+v, %v; want nothing to do", got, err)
	}
	// A release tag is never moved, mutable or not.
	if _, err := promoteOne(ctx, p, src, promote.ReleaseTarget(d, "latest")); !errors.Is(err, types.ErrTagImmutable) {
		t.Errorf("ReleaseTarget over a mutable tag: %v, want ErrTagImmutable", err)
	}
	if got := digestOf(t, d.To.Tag("latest")); got != moved {
		t.Errorf("latest moved to %s", got)
	}
	signed := d
	signed.RequireSignature = true
	if _, err := promoteOne(ctx, p, src, promote.ReleaseTarget(signed, "v2")); !errors.Is(err, promote.ErrNoVerifier) {
		t.Errorf("a destination requiring a signature without a key: %v, want ErrNoVerifier", err)
	}
}

func TestPromoteSameRegistryMounts(t *testing.T) {
	a := testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "staging/app", "v1", fixtureOpts{})
	p := newPromoter(t, registry.Client{})
	res, err := promoteOne(context.Background(), p, f.ref, promote.Target{Ref: a.Host + "/prod/app"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mounted == 0 || res.Uploaded != 0 {
		t.Errorf("same registry got mounted=%d uploaded=%d, want mounted>0 uploaded=0", res.Mounted, res.Uploaded)
	}
	if got := digestOf(t, a.Host+"/prod/app:v1"); got != f.index.String() {
		t.Errorf("destination is %s, want %s", got, f.index)
	}
	checkAttached(t, a.Host+"/prod/app", f)
}

func TestPromoteDryRunWritesNothing(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{})
	p := newPromoter(t, registry.Client{}, promote.WithDryRun())
	res, err := promoteOne(context.Background(), p, f.ref, promote.Target{Ref: b.Host + "/prod/app"})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[promote.Action]int{}
	for _, it := range res.Items {
		counts[it.Action]++
	}
	// 3 subjects x (sig + referrer) + the referrer's referrer + 2 children = 9 manifests by
	// digest or cosign tag, then the tag.
	if counts[promote.Copy] < 9 || counts[promote.Tag] != 1 || counts[promote.Skip] != 0 {
		t.Errorf("dry-run plan %v, want >= 9 copies, 1 tag, 0 skips", counts)
	}
	r, _ := registry.Client{}.ParseReference(b.Host + "/prod/app:v1")
	if _, err := remote.Head(r, registry.Client{}.Remote(context.Background())...); err == nil {
		t.Errorf("dry run wrote %s", r)
	}
}

// TestPromoteSignatureGate: the gate is asked about the digest to be copied, whether the
// source is named by tag (read first) or by digest (verified while it is read), and a
// refusal copies nothing.
func TestPromoteSignatureGate(t *testing.T) {
	a := testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{})
	pinned := a.Host + "/app@" + f.index.String()
	for _, src := range []string{f.ref, pinned} {
		t.Run(src, func(t *testing.T) {
			b := testenv.StartRegistry(t)
			m := metrics.Discard()
			var asked atomic.Value
			refuse := newPromoter(t, registry.Client{}, promote.WithMetrics(m), promote.WithVerify(func(_ context.Context, ref string) error {
				asked.Store(ref)
				return errors.New("no matching signatures")
			}))
			target := promote.Target{Ref: b.Host + "/prod/app:v1", RequireSignature: true}
			_, err := promoteOne(context.Background(), refuse, src, target)
			if !errors.Is(err, promote.ErrNotSigned) {
				t.Fatalf("got %v, want ErrNotSigned", err)
			}
			if got, _ := asked.Load().(string); got != pinned {
				t.Errorf("Verify got %q, want the digest-pinned %q", got, pinned)
			}
			entries, _ := os.ReadDir(filepath.Join(b.Dir, "docker", "registry", "v2", "blobs"))
			if len(entries) != 0 {
				t.Errorf("gate refused but destination holds blobs: %v", entries)
			}
			if got := testutil.ToFloat64(m.Promotions.WithLabelValues("unsigned")); got != 1 {
				t.Errorf("promotions{outcome=unsigned} = %v, want 1", got)
			}
			// Accepted, the same source is copied.
			accept := newPromoter(t, registry.Client{}, promote.WithVerify(func(context.Context, string) error { return nil }))
			res, err := promoteOne(context.Background(), accept, src, target)
			if err != nil || res.Digest != f.index.String() {
				t.Fatalf("accepted: %+v, %v", res, err)
			}
		})
	}
}

func TestPromoteThroughFaults(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 4, layerSize: 256 << 10})
	proxy := faultproxy.Start(t, b.URL, faultproxy.Config{Errors: 0.10, Throttles: 0.02, Drops: 0.04, Seed: 7})
	p := newPromoter(t, registry.Client{Retry: &registry.RetryPolicy{MaxAttempts: 8, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	res, err := promoteOne(context.Background(), p, f.ref, promote.Target{Ref: proxy.Host + "/prod/app"})
	if err != nil {
		t.Fatalf("promoting through faults (requests=%d errors=%d throttles=%d drops=%d): %v", proxy.Stats.Requests.Load(),
			proxy.Stats.Errors.Load(), proxy.Stats.Throttles.Load(), proxy.Stats.Drops.Load(), err)
	}
	t.Logf("requests=%d errors=%d throttles=%d drops=%d", proxy.Stats.Requests.Load(), proxy.Stats.Errors.Load(), proxy.Stats.Throttles.Load(), proxy.Stats.Drops.Load())
	if proxy.Stats.Errors.Load() == 0 || proxy.Stats.Throttles.Load() == 0 || proxy.Stats.Drops.Load() == 0 {
		t.Errorf("the proxy injected too few faults to prove anything")
	}
	if res.Digest != f.index.String() {
		t.Errorf("result digest %s, want %s", res.Digest, f.index)
	}
	if got := digestOf(t, b.Host+"/prod/app:v1"); got != f.index.String() {
		t.Errorf("destination is %s, want %s", got, f.index)
	}
	checkAttached(t, b.Host+"/prod/app", f)
}

func TestPromoteResumesAfterInterruption(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	f := pushFixture(t, a.Host, "app", "v1", fixtureOpts{layers: 4, layerSize: 256 << 10})
	ctx, cancel := context.WithCancel(context.Background())
	var done atomic.Int64
	var copied atomic.Int64
	p := newPromoter(t, registry.Client{}, promote.WithJobs(2), promote.WithProgress(func(e promote.Event) {
		if e.Item.Kind == promote.KindBlob {
			copied.Add(e.Item.Size)
			if done.Add(1) == 3 {
				cancel()
			}
		}
	}))
	first, err := promoteOne(ctx, p, f.ref, promote.Target{Ref: b.Host + "/prod/app"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted promotion: got %v, want context.Canceled", err)
	}
	if _, err := remote.Head(mustRef(t, b.Host+"/prod/app:v1"), registry.Client{}.Remote(context.Background())...); err == nil {
		t.Fatalf("interrupted promotion already wrote the tag")
	}

	second, err := promoteOne(context.Background(), newPromoter(t, registry.Client{}, promote.WithJobs(2)), f.ref, promote.Target{Ref: b.Host + "/prod/app"})
	if err != nil {
		t.Fatalf("resuming: %v", err)
	}
	if second.Skipped < copied.Load() {
		t.Errorf("resumed promotion skipped %d bytes, want at least the %d copied before the interruption", second.Skipped, copied.Load())
	}
	if got := first.Uploaded + second.Uploaded; got > second.Uploaded+second.Skipped {
		t.Errorf("uploaded %d bytes over two runs, more than the %d the image holds", got, second.Uploaded+second.Skipped)
	}
	if got := digestOf(t, b.Host+"/prod/app:v1"); got != f.index.String() {
		t.Errorf("destination is %s, want %s", got, f.index)
	}
	checkAttached(t, b.Host+"/prod/app", f)
}

func TestPromoteSourceFailsFast(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	// The test never logs in: it only needs the registry to demand credentials.
	locked := testenv.StartRegistry(t, localregistry.WithBasicAuth("ci", "secret"))
	pushFixture(t, a.Host, "app", "v1", fixtureOpts{})

	tests := []struct {
		name   string
		src    string
		status int
	}{
		{name: "missing tag", src: a.Host + "/app:nope", status: 404},
		{name: "missing repository", src: a.Host + "/nothing/here:v1", status: 404},
		{name: "unauthorized", src: locked.Host + "/app:v1", status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := &requestCounter{base: http.DefaultTransport, n: map[string]int{}}
			p := newPromoter(t, registry.Client{Keychain: emptyKeychain{}, Transport: seen})
			_, err := promoteOne(context.Background(), p, tt.src, promote.Target{Ref: b.Host + "/prod/app"})
			if req, n := seen.most(); n > 1 {
				t.Errorf("%s sent %d times, want once: %d cannot be fixed by retrying", req, n, tt.status)
			}
			var se *promote.SourceError
			if !errors.As(err, &se) || !errors.Is(err, promote.ErrSource) {
				t.Fatalf("got %v, want a SourceError", err)
			}
			if se.Status != tt.status {
				t.Errorf("status %d, want %d", se.Status, tt.status)
			}
			host := strings.Split(tt.src, "/")[0]
			if !strings.Contains(err.Error(), "registry "+host) || !strings.Contains(err.Error(), tt.src) {
				t.Errorf("error %q does not name registry %s and reference %s", err, host, tt.src)
			}
		})
	}
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// requestCounter counts the requests that reach the network, retries included.
type requestCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	// The /v2/ ping is go-containerregistry's auth handshake, made once per transport it
	// builds, not a retry.
	if r.URL.Path != "/v2/" {
		c.mu.Lock()
		c.n[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
	}
	return c.base.RoundTrip(r)
}

// reset forgets the requests counted so far.
func (c *requestCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.n)
}

// writes are the requests counted that write (POST, PUT, PATCH, DELETE), sorted.
func (c *requestCounter) writes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, n := range c.n {
		if !strings.HasPrefix(k, http.MethodGet) && !strings.HasPrefix(k, http.MethodHead) {
			for range n {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// most is the request sent most often and how often.
func (c *requestCounter) most() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	best, n := "", 0
	for k, v := range c.n {
		if v > n {
			best, n = k, v
		}
	}
	return best, n
}

// promoteOne promotes src to the one target t.
func promoteOne(ctx context.Context, p *promote.Promoter, src string, t promote.Target) (*promote.Result, error) {
	rs, errs := p.Promote(ctx, src, []promote.Target{t})
	return rs[0], errs[0]
}

// targets are the plain targets refs.
func targets(refs ...string) []promote.Target {
	out := make([]promote.Target, len(refs))
	for i, r := range refs {
		out[i] = promote.Target{Ref: r}
	}
	return out
}

func newPromoter(t testing.TB, reg registry.Client, opts ...promote.Option) *promote.Promoter {
	t.Helper()
	p, err := promote.New(reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opt     promote.Option
		wantErr error
		want    string // what the message says to fix
	}{
		{"no jobs", promote.WithJobs(0), promote.ErrInvalidOption, "jobs must be at least 1"},
		{"no time", promote.WithTimeout(0), promote.ErrInvalidOption, "timeout must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := promote.New(registry.Client{}, tc.opt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want a message saying %q", err, tc.want)
			}
		})
	}
}
