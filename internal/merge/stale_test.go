package merge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// noPlatformImage is what `crane append` pushes before `crane mutate --set-platform`: an
// image whose config names no os or architecture.
func noPlatformImage(t *testing.T) v1.Image {
	t.Helper()
	bare, _ := testenv.AppendThenMutate(t, "linux/amd64", t1)
	return bare
}

// pushImage pushes img under rev's arch tag of platform and returns the notification the
// registry sends for that push.
func (f *fixture) pushImage(t *testing.T, rev, platform string, img v1.Image) types.RegistryPush {
	t.Helper()
	pl := types.MustPlatform(platform)
	tag := types.ArchTag(types.DefaultArchTag).Render(rev, pl)
	testenv.Push(t, f.repo+":"+tag, img)
	d := testenv.Digest(t, img)
	return types.RegistryPush{ID: tag + "/" + d, Pipeline: "app", Revision: rev, Platform: pl, Tag: tag, Digest: d}
}

// children reads the merged index of rev from the registry: platform → child digest.
func (f *fixture) children(t *testing.T, rev string) map[string]string {
	t.Helper()
	return testenv.IndexChildren(t, f.repo+":"+rev)
}

// TestNotificationsAreOnlyHints: whatever order notifications arrive in, whatever digest
// they claim, the merge uses what the registry holds under each arch tag when it runs, and
// only a tag that really moved after the merge makes a revision conflicted.
func TestNotificationsAreOnlyHints(t *testing.T) {
	type step struct {
		push   string // "amd64-bare", "amd64", "arm64": push that image under its arch tag
		notify string // deliver the notification of an earlier push by its name
		forge  string // deliver a notification for the amd64 tag claiming this push's digest
		delete string // delete the arch tag of this push from the registry
	}
	tests := []struct {
		name       string
		steps      []step
		wantPhase  types.Phase
		wantAMD64  string // the push whose digest the index must hold for linux/amd64; "" no index
		wantStale  float64
		wantBroken float64 // immutability violations
	}{
		{
			name: "append then mutate, notifications in order",
			steps: []step{
				{push: "amd64-bare"}, {push: "amd64"}, {push: "arm64"},
				{notify: "amd64-bare"}, {notify: "amd64"}, {notify: "arm64"},
			},
			wantPhase: types.PhaseMerged, wantAMD64: "amd64", wantStale: 1,
		},
		{
			name: "append then mutate, the stale notification arrives after the merge",
			steps: []step{
				{push: "amd64-bare"}, {push: "amd64"}, {push: "arm64"},
				{notify: "amd64"}, {notify: "arm64"}, {notify: "amd64-bare"}, {notify: "amd64-bare"},
			},
			wantPhase: types.PhaseMerged, wantAMD64: "amd64", wantStale: 2,
		},
		{
			name: "the bare image is merged first and fails, the mutated one merges",
			steps: []step{
				{push: "arm64"}, {push: "amd64-bare"}, {notify: "arm64"}, {notify: "amd64-bare"},
				{push: "amd64"}, {notify: "amd64"}, {notify: "amd64-bare"},
			},
			wantPhase: types.PhaseMerged, wantAMD64: "amd64", wantStale: 1,
		},
		{
			name: "the same digest pushed again after the merge",
			steps: []step{
				{push: "amd64"}, {push: "arm64"}, {notify: "amd64"}, {notify: "arm64"},
				{push: "amd64"}, {notify: "amd64"}, {notify: "arm64"},
			},
			wantPhase: types.PhaseMerged, wantAMD64: "amd64",
		},
		{
			name: "a forged digest for an absent tag merges nothing",
			steps: []step{
				{push: "other-amd64"}, {push: "arm64"}, {forge: "other-amd64"}, {notify: "arm64"},
			},
			wantPhase: types.PhaseWaiting, wantStale: 1,
		},
		{
			name: "a forged digest for a present tag is ignored; the registry's digest is merged",
			steps: []step{
				{push: "other-amd64"}, {push: "amd64"}, {push: "arm64"}, {forge: "other-amd64"},
			},
			wantPhase: types.PhaseMerged, wantAMD64: "amd64", wantStale: 1,
		},
		{
			name: "a tag deleted after its notification was sent",
			steps: []step{
				{push: "amd64"}, {push: "arm64"}, {delete: "amd64"}, {notify: "amd64"}, {notify: "arm64"},
			},
			wantPhase: types.PhaseWaiting, wantStale: 1,
		},
		{
			name: "a tag deleted after the merge changes nothing",
			steps: []step{
				{push: "amd64"}, {push: "arm64"}, {notify: "amd64"}, {notify: "arm64"}, {delete: "amd64"}, {notify: "amd64"},
			},
			wantPhase: types.PhaseMerged, wantAMD64: "amd64", wantStale: 1,
		},
		{
			name: "another image under a merged arch tag is a conflict",
			steps: []step{
				{push: "amd64"}, {push: "arm64"}, {notify: "amd64"}, {notify: "arm64"}, {push: "amd64-other-build"}, {notify: "amd64-other-build"},
			},
			wantPhase: types.PhaseConflicted, wantAMD64: "amd64", wantBroken: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			m := f.merger()
			ctx := context.Background()
			const rev = "c0ffee"
			images := map[string]v1.Image{
				"amd64-bare":        noPlatformImage(t),
				"amd64":             testenv.PlatformImage(t, "linux/amd64", t1),
				"amd64-other-build": testenv.PlatformImage(t, "linux/amd64", t2),
				"other-amd64":       testenv.PlatformImage(t, "linux/amd64", t2),
				"arm64":             testenv.PlatformImage(t, "linux/arm64", t1),
			}
			pushed := map[string]types.RegistryPush{}
			for _, s := range tc.steps {
				switch {
				case s.push == "other-amd64":
					// Another revision's image, which a forged notification will name.
					pushed[s.push] = f.pushImage(t, "0ther", "linux/amd64", images[s.push])
				case s.push != "":
					platform := "linux/amd64"
					if s.push == "arm64" {
						platform = "linux/arm64"
					}
					pushed[s.push] = f.pushImage(t, rev, platform, images[s.push])
				case s.notify != "":
					f.deliver(t, m, pushed[s.notify])
				case s.forge != "":
					ev := pushed[s.forge]
					ev.ID, ev.Revision, ev.Tag = "forged", rev, rev+"-amd64"
					f.deliver(t, m, ev)
				case s.delete != "":
					ref, _ := name.ParseReference(f.repo+"@"+pushed[s.delete].Digest, name.Insecure)
					if err := remote.Delete(ref); err != nil {
						t.Fatal(err)
					}
				}
			}
			r, err := f.store.Get(ctx, "app", rev)
			if err != nil {
				t.Fatal(err)
			}
			if r.Phase != tc.wantPhase {
				t.Fatalf("phase %s (%s), want %s", r.Phase, r.Reason, tc.wantPhase)
			}
			if tc.wantAMD64 == "" {
				if r.Index != "" || f.indexDigest(t, rev) != "" {
					t.Fatalf("an index was merged: %s", r.Index)
				}
			} else {
				got := f.children(t, rev)
				if want := pushed[tc.wantAMD64].Digest; got["linux/amd64"] != want {
					t.Errorf("index holds %s for linux/amd64, want %s (%s)", got["linux/amd64"], want, tc.wantAMD64)
				}
				if got["linux/arm64"] != pushed["arm64"].Digest {
					t.Errorf("index holds %s for linux/arm64, want %s", got["linux/arm64"], pushed["arm64"].Digest)
				}
				if r.Index != f.indexDigest(t, rev) {
					t.Errorf("state says index %s, registry holds %s", r.Index, f.indexDigest(t, rev))
				}
			}
			if got := testutil.ToFloat64(f.m.StaleEvents); got != tc.wantStale {
				t.Errorf("stale notifications counted: %v, want %v", got, tc.wantStale)
			}
			if got := testutil.ToFloat64(f.m.ImmutabilityViolations); got != tc.wantBroken {
				t.Errorf("immutability violations: %v, want %v", got, tc.wantBroken)
			}
		})
	}
}

func (f *fixture) deliver(t *testing.T, m *Merger, ev types.RegistryPush) {
	t.Helper()
	if _, err := m.HandlePush(context.Background(), ev); err != nil {
		t.Fatalf("handling %s: %v", ev.ID, err)
	}
}

// TestMergeLease: a live lease of another holder defers the merge until it can have
// expired; an expired one (its owner stopped renewing: it died) is taken over at once.
func TestMergeLease(t *testing.T) {
	f := newFixture(t)
	m := f.merger()
	ctx := context.Background()
	amd := f.push(t, "r1", "linux/amd64", "linux/amd64", t1)
	f.push(t, "r1", "linux/arm64", "linux/arm64", t1)
	hold := func(expires time.Time) {
		t.Helper()
		if _, err := f.store.Update(ctx, "app", "r1", func(r *types.Revision) error {
			r.Merging = &types.Lease{Owner: "replica-that-died", ID: "x", Expires: expires}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	hold(time.Now().Add(time.Minute))
	_, err := m.HandlePush(ctx, amd)
	var busy *InProgressError
	if !errors.As(err, &busy) || busy.Owner != "replica-that-died" || busy.RetryAfter() < 50*time.Second {
		t.Fatalf("live lease: got %v, want an InProgressError naming the holder with about a minute to wait", err)
	}
	if f.indexDigest(t, "r1") != "" {
		t.Fatal("merged despite a live lease")
	}
	hold(time.Now().Add(-time.Millisecond))
	r, err := m.HandlePush(ctx, amd)
	if err != nil || r.Phase != types.PhaseMerged || r.Merging != nil {
		t.Fatalf("expired lease: %+v %v, want merged and the lease dropped", r, err)
	}
}

// TestAFailureAboutAMovedTagIsNotRecorded: a merge that fails on an image its tag no
// longer holds records no failure; it asks to be tried again.
func TestAFailureAboutAMovedTagIsNotRecorded(t *testing.T) {
	f := newFixture(t)
	m := f.merger()
	ctx := context.Background()
	p := f.p
	f.pushImage(t, "r1", "linux/amd64", noPlatformImage(t))
	f.push(t, "r1", "linux/arm64", "linux/arm64", t1)
	if _, err := m.resolveAndRecord(ctx, f.p, "r1"); err != nil {
		t.Fatal(err)
	}
	c, err := m.claim(ctx, p, "r1")
	if err != nil || c == nil {
		t.Fatalf("claim: %v %v", c, err)
	}
	// The tag moves while the merge of the bare image runs.
	fixed := f.push(t, "r1", "linux/amd64", "linux/amd64", t1)
	if _, err := m.resolveAndRecord(ctx, f.p, "r1"); err != nil {
		t.Fatal(err)
	}
	// The refusal is about the inputs claimed: c.rev's digests.
	_, err = m.refuse(ctx, p, c, (*types.Revision).FinishFailed, "no platform")
	if !errors.Is(err, errInputsMoved) {
		t.Fatalf("refuse: %v, want errInputsMoved", err)
	}
	r, _ := f.store.Get(ctx, "app", "r1")
	if r.Phase == types.PhaseFailed || r.Merging != nil || r.Platforms["linux/amd64"].Digest != fixed.Digest {
		t.Fatalf("state %+v: want not failed, lease dropped, the new digest recorded", r)
	}
	if r, err = m.Sync(ctx, p, "r1"); err != nil || r.Phase != types.PhaseMerged {
		t.Fatalf("retry: %+v %v", r, err)
	}
}

// resolveAndRecord records what the registry holds for rev without merging.
func (m *Merger) resolveAndRecord(ctx context.Context, p types.Pipeline, rev string) (*types.Revision, error) {
	now, err := m.resolve(ctx, p, rev)
	if err != nil {
		return nil, err
	}
	return m.store.Update(ctx, p.Name, rev, func(r *types.Revision) error {
		r.ExpectPlatforms(p.ArchTags(r.Revision))
		_, err := r.RecordDigests(string(p.Staging), p.Keys(), now, time.Now())
		return err
	})
}
