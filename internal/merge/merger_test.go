package merge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

type fixture struct {
	repo  string
	p     types.Pipeline
	store *state.Store
	m     *metrics.Metrics
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg := testenv.StartRegistry(t)
	kv := bustest.Revisions(t)
	repo := reg.Host + "/team/app"
	p := types.Pipeline{
		Name: "app", Staging: types.Repository(repo), ArchTag: types.DefaultArchTag,
		Platforms: []types.Platform{types.MustPlatform("linux/amd64"), types.MustPlatform("linux/arm64")},
		// Merge-only and unsigned, so that these tests of the registry as the source of
		// truth take every image in; evidence_test.go tests what is accepted. The cache is
		// set for the reconciler's sake (its tags look like arch tags).
		Build: types.BuildSpec{Cache: types.DefaultCacheRef, CacheMode: "max"},
	}
	return &fixture{repo: repo, p: p, store: state.New(kv), m: metrics.Discard()}
}

func (f *fixture) merger(opts ...Option) *Merger {
	m, err := New(f.store, registry.Client{}, []types.Pipeline{f.p}, append([]Option{WithMetrics(f.m), WithOwner("test")}, opts...)...)
	if err != nil {
		panic(err)
	}
	return m
}

// push pushes an image of imagePlatform under the arch tag of tagPlatform and returns the
// event the registry receiver would publish for it.
func (f *fixture) push(t *testing.T, rev, tagPlatform, imagePlatform string, created time.Time) types.RegistryPush {
	t.Helper()
	pl := types.MustPlatform(tagPlatform)
	tag := types.ArchTag(types.DefaultArchTag).Render(rev, pl)
	img := testenv.PlatformImage(t, imagePlatform, created)
	testenv.Push(t, f.repo+":"+tag, img)
	d := testenv.Digest(t, img)
	return types.RegistryPush{ID: tag + "/" + d, Pipeline: "app", Revision: rev, Platform: pl, Tag: tag, Digest: d}
}

func (f *fixture) indexDigest(t *testing.T, rev string) string {
	t.Helper()
	ref, _ := name.ParseReference(f.repo+":"+rev, name.Insecure)
	d, err := remote.Head(ref)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}

func TestTwoReplicasMergeOnce(t *testing.T) {
	f := newFixture(t)
	a, b := f.merger(), f.merger()
	ctx := context.Background()
	for i := range 5 {
		rev := fmt.Sprintf("rev%d", i)
		amd := f.push(t, rev, "linux/amd64", "linux/amd64", t1)
		arm := f.push(t, rev, "linux/arm64", "linux/arm64", t2)
		// Each replica gets one push, and both get a redelivery of the other's.
		var wg sync.WaitGroup
		for _, job := range []struct {
			m  *Merger
			ev types.RegistryPush
		}{{a, amd}, {b, arm}, {a, arm}, {b, amd}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// ErrInProgress is the daemon's cue to redeliver later: the other replica merges.
				if _, err := job.m.HandlePush(ctx, job.ev); err != nil && !errors.Is(err, ErrInProgress) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		r, err := f.store.Get(ctx, "app", rev)
		if err != nil {
			t.Fatal(err)
		}
		if r.Phase != types.PhaseMerged || r.Index == "" || r.Index != f.indexDigest(t, rev) {
			t.Fatalf("%s: state %+v, registry index %s", rev, r, f.indexDigest(t, rev))
		}
	}
	if n := testutil.ToFloat64(f.m.Merges.WithLabelValues("merged")); n != 5 {
		t.Errorf("indexes written: %v, want exactly 5 (one per revision)", n)
	}
}

func TestRepushAfterMergeIsAViolation(t *testing.T) {
	f := newFixture(t)
	m := f.merger()
	ctx := context.Background()
	if _, err := m.HandlePush(ctx, f.push(t, "r1", "linux/amd64", "linux/amd64", t1)); err != nil {
		t.Fatal(err)
	}
	r, err := m.HandlePush(ctx, f.push(t, "r1", "linux/arm64", "linux/arm64", t1))
	if err != nil || r.Phase != types.PhaseMerged {
		t.Fatalf("merge: %+v %v", r, err)
	}
	index := r.Index
	// The same push again changes nothing.
	again := types.RegistryPush{Pipeline: "app", Revision: "r1", Platform: types.MustPlatform("linux/arm64"), Tag: "r1-arm64", Digest: r.Platforms["linux/arm64"].Digest}
	if r2, err := m.HandlePush(ctx, again); err != nil || r2.Phase != types.PhaseMerged || !r2.Updated.Equal(r.Updated) {
		t.Fatalf("same push again changed state: %+v %v", r2, err)
	}
	// Another image under the same arch tag: conflicted, counted, index untouched.
	r, err = m.HandlePush(ctx, f.push(t, "r1", "linux/arm64", "linux/arm64", t2))
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != types.PhaseConflicted || !strings.Contains(r.Reason, "r1-arm64 now points at") {
		t.Fatalf("state after re-push: %+v", r)
	}
	if got := testutil.ToFloat64(f.m.ImmutabilityViolations); got != 1 {
		t.Errorf("violations = %v, want 1", got)
	}
	if f.indexDigest(t, "r1") != index || r.Index != index {
		t.Errorf("index moved")
	}
}

func TestWrongPlatformFailsThenCorrectPushMerges(t *testing.T) {
	f := newFixture(t)
	m := f.merger()
	ctx := context.Background()
	bad := f.push(t, "r2", "linux/amd64", "linux/arm64", t1) // an arm64 image under the amd64 tag
	if _, err := m.HandlePush(ctx, bad); err != nil {
		t.Fatal(err)
	}
	r, err := m.HandlePush(ctx, f.push(t, "r2", "linux/arm64", "linux/arm64", t1))
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != types.PhaseFailed || !strings.Contains(r.Reason, "r2-amd64") || !strings.Contains(r.Reason, "expected platform linux/amd64") || !strings.Contains(r.Reason, "says linux/arm64") {
		t.Fatalf("state: %+v", r)
	}
	if f.indexDigest(t, "r2") != "" {
		t.Fatal("an index was pushed for a failed revision")
	}
	if got := testutil.ToFloat64(f.m.Merges.WithLabelValues("failed")); got != 1 {
		t.Errorf("failed merges = %v", got)
	}
	// The fixed image under the same tag merges.
	r, err = m.HandlePush(ctx, f.push(t, "r2", "linux/amd64", "linux/amd64", t1))
	if err != nil || r.Phase != types.PhaseMerged {
		t.Fatalf("after the fix: %+v %v", r, err)
	}
}

func TestReconcileMergesWithoutNotifications(t *testing.T) {
	f := newFixture(t)
	m := f.merger()
	ctx := context.Background()
	f.push(t, "r3", "linux/amd64", "linux/amd64", t1)
	f.push(t, "r3", "linux/arm64", "linux/arm64", t1)
	f.push(t, "r4", "linux/amd64", "linux/amd64", t1) // incomplete: left alone
	testenv.Push(t, f.repo+":latest", testenv.PlatformImage(t, "linux/amd64", t1))
	// The build cache of both platforms: tags that fit {revision}-{arch} for a revision
	// "buildcache-linux", and must not be merged as one.
	testenv.Push(t, f.repo+":buildcache-linux-amd64", testenv.PlatformImage(t, "linux/amd64", t1))
	testenv.Push(t, f.repo+":buildcache-linux-arm64", testenv.PlatformImage(t, "linux/arm64", t1))
	rep, err := m.Reconcile(ctx, f.p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete != 1 || rep.Merged != 1 {
		t.Errorf("report %+v, want 1 complete revision merged", rep)
	}
	r, err := f.store.Get(ctx, "app", "r3")
	if err != nil || r.Phase != types.PhaseMerged || r.Index != f.indexDigest(t, "r3") {
		t.Fatalf("r3: %+v %v", r, err)
	}
	if _, err := f.store.Get(ctx, "app", "r4"); err == nil {
		t.Error("incomplete revision r4 got state")
	}
	// Again: nothing to do, nothing counted.
	before := testutil.ToFloat64(f.m.Merges.WithLabelValues("merged"))
	if rep, err = m.Reconcile(ctx, f.p); err != nil || rep.Done != 1 || rep.Merged != 0 {
		t.Fatalf("second reconcile: %+v %v, want the revision reported done", rep, err)
	}
	if after := testutil.ToFloat64(f.m.Merges.WithLabelValues("merged")); after != before {
		t.Errorf("second reconcile merged again")
	}
}
