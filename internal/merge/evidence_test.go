package merge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// trusting is a verify policy (a boundary we own: sign.Policy is tested on its own) that
// accepts the digests in ok and refuses the others.
type trusting struct{ ok map[string]bool }

func (p trusting) Verify(_ context.Context, ref string) (types.Evidence, error) {
	d := ref[strings.LastIndex(ref, "@")+1:]
	if !p.ok[d] {
		return types.Evidence{}, fmt.Errorf("%w: %s: no signature by key ci.pub", types.ErrUntrusted, ref)
	}
	return types.Evidence{Kind: types.EvidenceSignature, Digest: d, Signer: "key ci.pub"}, nil
}

// built records a successful build of platform key that reported digest.
func (f *fixture) built(t *testing.T, rev, key, digest string) {
	t.Helper()
	res := types.BuildResult{
		Request: types.BuildRequest{Pipeline: f.p.Name, Revision: rev, Platform: types.MustPlatform(key),
			Image: f.repo + ":" + f.p.ArchTag.Render(rev, types.MustPlatform(key))},
		Outcome: types.BuildSucceeded, Final: true, Attempt: 1, Job: "build-" + rev + "-" + key, Digest: digest,
	}
	if _, err := f.store.Update(context.Background(), f.p.Name, rev, func(r *types.Revision) error {
		return r.RecordBuild(res, time.Now().UTC())
	}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, rev string) *types.Revision {
	t.Helper()
	r, err := f.store.Get(context.Background(), f.p.Name, rev)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestABuildingPipelineMergesOnlyItsBuilds: the first bypass of issue 22. An arch tag that
// holds another image than promoter's build reported is never merged.
func TestABuildingPipelineMergesOnlyItsBuilds(t *testing.T) {
	ctx := context.Background()
	amd, arm := "linux/amd64", "linux/arm64"

	t.Run("its own builds are merged, with the jobs as evidence", func(t *testing.T) {
		f := newFixture(t)
		f.p.Source = types.Source{Repo: "https://git.example/team/app"}
		m := f.merger()
		a := f.push(t, "r1", amd, amd, t1)
		b := f.push(t, "r1", arm, arm, t1)
		for _, ev := range []types.RegistryPush{a, b} {
			if r, err := m.HandlePush(ctx, ev); err != nil || r.Index != "" {
				t.Fatalf("merged before any build reported: %+v %v", r, err)
			}
		}
		f.built(t, "r1", amd, a.Digest)
		f.built(t, "r1", arm, b.Digest)
		r, err := m.Sync(ctx, f.p, "r1")
		if err != nil || r.Phase != types.PhaseMerged {
			t.Fatalf("after both builds reported: %+v %v", r, err)
		}
		for key, d := range map[string]string{amd: a.Digest, arm: b.Digest} {
			want := types.Evidence{Kind: types.EvidenceBuild, Digest: d, Job: "build-r1-" + key}
			if got := r.Platforms[key].Evidence; got == nil || *got != want {
				t.Errorf("%s evidence: got %+v, want %+v", key, got, want)
			}
		}
	})

	t.Run("an arch tag pushed over after the build conflicts the revision", func(t *testing.T) {
		f := newFixture(t)
		f.p.Source = types.Source{Repo: "https://git.example/team/app"}
		m := f.merger()
		ours := f.push(t, "r2", amd, amd, t1)
		f.built(t, "r2", amd, ours.Digest)
		theirs := f.push(t, "r2", amd, amd, t2) // pushed over, before the merge
		b := f.push(t, "r2", arm, arm, t1)
		f.built(t, "r2", arm, b.Digest)
		r, err := m.HandlePush(ctx, theirs)
		if err != nil {
			t.Fatal(err)
		}
		if r.Phase != types.PhaseConflicted || r.Index != "" || f.indexDigest(t, "r2") != "" {
			t.Fatalf("state %+v, index in the registry %q; want conflicted, nothing merged", r, f.indexDigest(t, "r2"))
		}
		for _, want := range []string{theirs.Digest, ours.Digest, "job build-r2-linux/amd64", "pushed over after the build"} {
			if !strings.Contains(r.Reason, want) {
				t.Errorf("reason %q does not name %q", r.Reason, want)
			}
		}
	})
}

// TestABuildingPipelineWaitsForItsBuilds: an image no build reported waits for one, up to
// the build wait.
func TestABuildingPipelineWaitsForItsBuilds(t *testing.T) {
	ctx := context.Background()
	amd, arm := "linux/amd64", "linux/arm64"

	t.Run("an image no build reported fails once the build wait is over", func(t *testing.T) {
		f := newFixture(t)
		f.p.Source = types.Source{Repo: "https://git.example/team/app"}
		m := f.merger(WithBuildWait(200 * time.Millisecond))
		f.push(t, "r3", amd, amd, t1)
		if r, err := m.HandlePush(ctx, f.push(t, "r3", arm, arm, t1)); err != nil || r.Phase != types.PhaseWaiting {
			t.Fatalf("before the wait is over: %+v %v", r, err)
		}
		r, err := syncUntil(t, m, f.p, "r3", types.PhaseFailed)
		if err != nil || r.Phase != types.PhaseFailed || r.Index != "" {
			t.Fatalf("after the wait: %+v %v, want failed", r, err)
		}
		if !strings.Contains(r.Reason, "no build of promoter's reported it within 200ms") {
			t.Errorf("reason %q", r.Reason)
		}
		// Promoter's build then pushes and reports: the revision is tried again and merged.
		a := f.push(t, "r3", amd, amd, t2)
		b := f.push(t, "r3", arm, arm, t2)
		f.built(t, "r3", amd, a.Digest)
		f.built(t, "r3", arm, b.Digest)
		if r, err := m.Sync(ctx, f.p, "r3"); err != nil || r.Phase != types.PhaseMerged {
			t.Fatalf("after the builds: %+v %v, want merged", r, err)
		}
	})
}

// TestABuildingPipelineWithAPolicy: with a verify policy, an image no build reported is
// merged on a signature of the policy's, and waits for a build without one.
func TestABuildingPipelineWithAPolicy(t *testing.T) {
	ctx := context.Background()
	amd, arm := "linux/amd64", "linux/arm64"

	t.Run("with a policy, an unsigned image no build reported fails once the build wait is over", func(t *testing.T) {
		f := newFixture(t)
		f.p.Source = types.Source{Repo: "https://git.example/team/app"}
		m := f.merger(WithBuildWait(200*time.Millisecond), WithPolicies(map[string]Policy{"app": trusting{ok: map[string]bool{}}}))
		f.push(t, "r5", amd, amd, t1)
		if r, err := m.HandlePush(ctx, f.push(t, "r5", arm, arm, t1)); err != nil || r.Phase != types.PhaseWaiting {
			t.Fatalf("before the wait is over: %+v %v", r, err)
		}
		if r, err := syncUntil(t, m, f.p, "r5", types.PhaseFailed); err != nil || r.Phase != types.PhaseFailed || !strings.Contains(r.Reason, "no build of promoter's reported it") {
			t.Fatalf("after the wait: %+v %v, want failed", r, err)
		}
	})

	t.Run("with a policy, a signed image no build reported is merged on its signature", func(t *testing.T) {
		f := newFixture(t)
		f.p.Source = types.Source{Repo: "https://git.example/team/app"}
		a := f.push(t, "r4", amd, amd, t1)
		b := f.push(t, "r4", arm, arm, t1)
		m := f.merger(WithPolicies(map[string]Policy{"app": trusting{ok: map[string]bool{a.Digest: true}}}))
		f.built(t, "r4", arm, b.Digest)
		r, err := m.HandlePush(ctx, a)
		if err != nil || r.Phase != types.PhaseMerged {
			t.Fatalf("%+v %v", r, err)
		}
		if got := r.Platforms[amd].Evidence; got == nil || got.Kind != types.EvidenceSignature || got.Signer != "key ci.pub" {
			t.Errorf("amd64 evidence %+v, want the signature", got)
		}
		if got := r.Platforms[arm].Evidence; got == nil || got.Kind != types.EvidenceBuild {
			t.Errorf("arm64 evidence %+v, want the build", got)
		}
	})
}

// TestAMergeOnlyPipelineMergesWhatItsPolicyAccepts: the second bypass of issue 22.
func TestAMergeOnlyPipelineMergesWhatItsPolicyAccepts(t *testing.T) {
	ctx := context.Background()
	amd, arm := "linux/amd64", "linux/arm64"
	f := newFixture(t)
	f.p.Sign = true
	f.p.Verify = types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "ci.pub"}}}
	signed := map[string]bool{}
	m := f.merger(WithPolicies(map[string]Policy{"app": trusting{ok: signed}}))

	a := f.push(t, "r1", amd, amd, t1)
	signed[a.Digest] = true
	b := f.push(t, "r1", arm, arm, t1) // not signed
	if _, err := m.HandlePush(ctx, a); err != nil {
		t.Fatal(err)
	}
	r, err := m.HandlePush(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != types.PhaseFailed || r.Index != "" || f.indexDigest(t, "r1") != "" {
		t.Fatalf("state %+v; want failed, nothing merged", r)
	}
	if !strings.Contains(r.Reason, b.Digest) || !strings.Contains(r.Reason, "no signature by key ci.pub") {
		t.Errorf("reason %q does not name the image and what was expected", r.Reason)
	}
	if !r.Untrusted {
		t.Errorf("the refusal is not marked untrusted, so a later signature would not retry it: %+v", r)
	}
	// Nothing changed: a sync (a reconcile) writes nothing.
	if again, err := m.Sync(ctx, f.p, "r1"); err != nil || again.Phase != types.PhaseFailed || !again.Updated.Equal(r.Updated) {
		t.Fatalf("a sync with the evidence still missing: %+v %v", again, err)
	}
	// A correctly signed re-push recovers the revision.
	b2 := f.push(t, "r1", arm, arm, t2)
	signed[b2.Digest] = true
	if r, err = m.HandlePush(ctx, b2); err != nil || r.Phase != types.PhaseMerged {
		t.Fatalf("after a signed re-push: %+v %v, want merged", r, err)
	}
	if got := r.Platforms[arm].Evidence; got == nil || got.Kind != types.EvidenceSignature || got.Digest != b2.Digest {
		t.Errorf("arm64 evidence %+v", got)
	}
}

// TestAMergeOnlyPipelineEvidence: a signature that comes later, a pipeline that signs
// without a policy, and acceptUnverified.
func TestAMergeOnlyPipelineEvidence(t *testing.T) {
	ctx := context.Background()
	amd, arm := "linux/amd64", "linux/arm64"

	t.Run("a signature added after the push is found by the next sync", func(t *testing.T) {
		f := newFixture(t)
		f.p.Sign = true
		f.p.Verify = types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: "ci.pub"}}}
		signed := map[string]bool{}
		m := f.merger(WithPolicies(map[string]Policy{"app": trusting{ok: signed}}))
		a := f.push(t, "r9", amd, amd, t1)
		b := f.push(t, "r9", arm, arm, t1)
		r, err := m.HandlePush(ctx, b)
		if err != nil || r.Phase != types.PhaseFailed {
			t.Fatalf("unsigned: %+v %v", r, err)
		}
		signed[a.Digest], signed[b.Digest] = true, true // CI signs after pushing
		if r, err = m.Sync(ctx, f.p, "r9"); err != nil || r.Phase != types.PhaseMerged || r.Untrusted {
			t.Fatalf("after the signatures: %+v %v, want merged", r, err)
		}
	})

	t.Run("a pipeline that signs without a policy merges nothing", func(t *testing.T) {
		f := newFixture(t)
		f.p.Sign = true
		m := f.merger()
		f.push(t, "r2", amd, amd, t1)
		r, err := m.HandlePush(ctx, f.push(t, "r2", arm, arm, t1))
		if err != nil || r.Phase != types.PhaseFailed || !strings.Contains(r.Reason, "has no verify policy") {
			t.Fatalf("%+v %v", r, err)
		}
	})

	t.Run("acceptUnverified merges and says so", func(t *testing.T) {
		f := newFixture(t)
		f.p.Sign, f.p.Verify.AcceptUnverified = true, true
		m := f.merger()
		f.push(t, "r3", amd, amd, t1)
		r, err := m.HandlePush(ctx, f.push(t, "r3", arm, arm, t1))
		if err != nil || r.Phase != types.PhaseMerged {
			t.Fatalf("%+v %v", r, err)
		}
		if got := r.Platforms[amd].Evidence; got == nil || got.Kind != types.EvidenceUnverified || !strings.Contains(got.Detail, "acceptUnverified") {
			t.Errorf("evidence %+v", got)
		}
	})
}

// syncUntil syncs revision every 20 ms until it is in phase, for up to 10 s (a wait that
// runs on the wall clock, such as the build wait, is over), and returns the last sync's
// outcome.
func syncUntil(t *testing.T, m *Merger, p types.Pipeline, revision string, phase types.Phase) (*types.Revision, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := m.Sync(context.Background(), p, revision)
		if err != nil || (r != nil && r.Phase == phase) || time.Now().After(deadline) {
			return r, err
		}
		<-tick.C
	}
}
