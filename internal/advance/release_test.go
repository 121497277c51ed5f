package advance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/types"
)

const (
	prod   = "prod.example/app"
	mirror = "mirror.example/app"
)

func tagged(rev, tag string) types.ReleaseTagged {
	return types.ReleaseTagged{ID: "delivery-" + rev + "-" + tag, Pipeline: "app", Repo: "https://git.example/team/app", Tag: tag, Revision: rev,
		Received: time.Unix(1700000000, 0).UTC()}
}

// drain handles every published step, and the steps those publish, as the bus would.
func (f *fixture) drain(t *testing.T) {
	t.Helper()
	for steps := f.pub.take(); len(steps) > 0; steps = f.pub.take() {
		for _, s := range steps {
			if err := f.adv.HandleStep(context.Background(), s); err != nil {
				t.Fatalf("step %+v: %v", s, err)
			}
		}
	}
}

// TestReleaseTagWaitsForItsRevision: a tag pushed before its commit was built is recorded
// and waits; nothing is built for it. Once the revision is merged, signed and promoted, the
// same index is promoted under the tag to each destination, right after the revision tag.
func TestReleaseTagWaitsForItsRevision(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pipeline(true, prod, mirror))
	if err := f.adv.HandleRelease(ctx, tagged("r1", "v1.2.3")); err != nil {
		t.Fatal(err)
	}
	got := f.get(t, "r1")
	if got.Phase != "" || got.Releases["v1.2.3"].Requested.IsZero() {
		t.Fatalf("after the tag: %+v, want the release recorded on a revision with no phase", got)
	}
	if steps := f.pub.take(); len(steps) != 0 {
		t.Fatalf("published %+v for a revision not built yet", steps)
	}

	if err := f.adv.Next(ctx, f.merged(t, "r1")); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	got = f.get(t, "r1")
	if got.Phase != types.PhasePromoted {
		t.Fatalf("phase %s, want promoted", got.Phase)
	}
	src := "staging.example/app@" + index
	if diff := cmp.Diff([]string{src + " " + prod + ":v1.2.3", src + " " + mirror + ":v1.2.3"}, f.prom.releases); diff != "" {
		t.Errorf("release promotions (-want +got):\n%s", diff)
	}
	if len(f.prom.calls) != 2 || len(f.sign.refs) != 1 {
		t.Errorf("revision promotions %v, signatures %v: want each once", f.prom.calls, f.sign.refs)
	}
	for _, d := range []string{prod, mirror} {
		if pr := got.Releases["v1.2.3"].Promotions[d]; !pr.Done || pr.Digest != index || pr.At.IsZero() {
			t.Errorf("release at %s: %+v, want done with %s", d, pr, index)
		}
	}
}

// TestReleaseTagOfAPromotedRevision: a tag for a revision already promoted is promoted at
// once; a redelivered step or the same tag again promotes nothing twice.
func TestReleaseTagOfAPromotedRevision(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pipeline(false, prod, mirror))
	if err := f.adv.Next(ctx, f.merged(t, "r1")); err != nil {
		t.Fatal(err)
	}
	f.drain(t)
	if got := f.get(t, "r1"); got.Phase != types.PhasePromoted {
		t.Fatalf("phase %s, want promoted", got.Phase)
	}

	if err := f.adv.HandleRelease(ctx, tagged("r1", "v2.0.0")); err != nil {
		t.Fatal(err)
	}
	steps := f.pub.take()
	if len(steps) != 2 || steps[0].Tag != "v2.0.0" || steps[0].Destination != prod || steps[1].Destination != mirror {
		t.Fatalf("published %+v, want a release promotion per destination", steps)
	}
	for _, s := range append(steps, steps...) { // each delivered twice
		if err := f.adv.HandleStep(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.prom.releases) != 2 {
		t.Fatalf("release promotions %v, want one per destination", f.prom.releases)
	}
	if err := f.adv.HandleRelease(ctx, tagged("r1", "v2.0.0")); err != nil {
		t.Fatal(err)
	}
	if steps := f.pub.take(); len(steps) != 0 {
		t.Errorf("the same tag again published %+v", steps)
	}
	// Resume has nothing left to do for it either.
	if err := f.adv.Resume(ctx, []*types.Revision{f.get(t, "r1")}); err != nil {
		t.Fatal(err)
	}
	if steps := f.pub.take(); len(steps) != 0 {
		t.Errorf("resume published %+v", steps)
	}
}

// promotedWithRelease stores revision rev merged, promoted to both destinations, with
// release tag requested.
func (f *fixture) promotedWithRelease(t *testing.T, rev, tag string) {
	t.Helper()
	f.merged(t, rev)
	if _, err := f.store.Update(context.Background(), f.p.Name, rev, func(r *types.Revision) error {
		for _, d := range []string{prod, mirror} {
			if _, err := r.PromotedTo(d, index, time.Now(), time.Second, []string{prod, mirror}); err != nil {
				return err
			}
		}
		return r.ReleaseRequested(tag, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseStepOutcomes: each release promotion's outcome, recorded on that release at
// that destination only.
func TestReleaseStepOutcomes(t *testing.T) {
	ctx := context.Background()
	step := types.Step{Kind: types.StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: prod, Tag: "v1"}
	tests := []struct {
		name string
		// setup runs on a revision promoted to prod with release v1 requested.
		setup   func(t *testing.T, f *fixture)
		step    types.Step
		promErr error
		wantErr error // errors.Is; errAny: some error
		// wantRelease is the release's promotion at prod afterwards.
		wantDone, wantConflicted bool
		wantPhase                types.Phase
		wantCalls                int
	}{
		{name: "promoted", step: step, wantDone: true, wantPhase: types.PhasePromoted, wantCalls: 1},
		{name: "the tag points elsewhere", step: step, promErr: fmt.Errorf("prod: %w", types.ErrTagImmutable),
			wantConflicted: true, wantPhase: types.PhasePromoted, wantCalls: 1},
		{name: "registry down is retried", step: step, promErr: errors.New("503 Service Unavailable"), wantErr: errAny,
			wantPhase: types.PhasePromoted, wantCalls: 1},
		{name: "a release the read does not hold yet is read again", step: withTag(step, "v9"), wantErr: errStaleState,
			wantPhase: types.PhasePromoted},
		{name: "a destination no longer configured", step: withDestination(step, "gone.example/app"), wantPhase: types.PhasePromoted},
		{name: "a step of another index", step: withIndex(step, "sha256:other"), wantPhase: types.PhasePromoted},
		{name: "a revision conflicted since", step: step, wantPhase: types.PhaseConflicted,
			setup: func(t *testing.T, f *fixture) {
				if _, err := f.store.Update(ctx, "app", "r1", func(r *types.Revision) error {
					return r.PromotionConflicted(mirror, "mirror.example/app:r1 points elsewhere", time.Now())
				}); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, pipeline(false, prod, mirror))
			f.promotedWithRelease(t, "r1", "v1")
			if tc.setup != nil {
				tc.setup(t, f)
			}
			f.prom.err[prod+":v1"] = tc.promErr
			err := f.adv.HandleStep(ctx, tc.step)
			switch {
			case tc.wantErr == errAny && err == nil, tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("HandleStep: %v, want %v", err, tc.wantErr)
			}
			got := f.get(t, "r1")
			pr := got.Releases["v1"].Promotions[prod]
			if got.Phase != tc.wantPhase || pr.Done != tc.wantDone || pr.Conflicted != tc.wantConflicted || len(f.prom.releases) != tc.wantCalls {
				t.Fatalf("phase %s, release at prod %+v after %d calls; want phase %s, done %v, conflicted %v after %d",
					got.Phase, pr, len(f.prom.releases), tc.wantPhase, tc.wantDone, tc.wantConflicted, tc.wantCalls)
			}
			if tc.wantConflicted && !strings.Contains(pr.Error, "immutable") {
				t.Errorf("a conflicted release must say why: %q", pr.Error)
			}
			if got.Releases["v1"].Promotions[mirror].Done || len(got.Releases) != 1 {
				t.Errorf("another release or destination was touched: %+v", got.Releases)
			}
			if tc.wantErr == errAny {
				f.adv.StepRetrying(ctx, tc.step, 1, time.Now().Add(time.Second), err)
				if r := f.get(t, "r1").Releases["v1"].Promotions[prod].Retry; r.Failures != 1 || !strings.Contains(r.Error, "503") {
					t.Errorf("release retry %+v, want it recorded", r)
				}
			}
		})
	}
}

// TestReleaseTagOfAFailedRevision: a failed revision records the tag and says why it is
// not promoted; nothing is published.
func TestReleaseTagOfAFailedRevision(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, pipeline(false, prod))
	if _, err := f.store.Update(ctx, "app", "r1", func(r *types.Revision) error {
		return r.RecordBuild(types.BuildResult{Request: types.BuildRequest{Platform: types.MustPlatform("linux/amd64"), Image: "r1-amd64"},
			Outcome: types.BuildFailed, Reason: "exit 1", Final: true, Attempt: 3}, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.adv.HandleRelease(ctx, tagged("r1", "v1")); err != nil {
		t.Fatal(err)
	}
	got := f.get(t, "r1")
	if got.Phase != types.PhaseFailed || !strings.Contains(got.Releases["v1"].Reason, "the revision is failed") {
		t.Errorf("got phase %s, release %+v; want failed, and the release saying why", got.Phase, got.Releases["v1"])
	}
	if steps := f.pub.take(); len(steps) != 0 {
		t.Errorf("published %+v for a failed revision", steps)
	}
}

// TestResumeRepublishesReleases: a promoted revision with a release left gets its steps
// again on resume; one whose releases are done does not.
func TestResumeRepublishesReleases(t *testing.T) {
	f := newFixture(t, pipeline(false, prod))
	done := map[string]types.Promotion{prod: {Done: true, Digest: index}}
	left := &types.Revision{Pipeline: "app", Revision: "r1", Phase: types.PhasePromoted, Index: index, Promotions: done,
		Releases: map[string]types.Release{"v1": {}}}
	finished := &types.Revision{Pipeline: "app", Revision: "r2", Phase: types.PhasePromoted, Index: index, Promotions: done,
		Releases: map[string]types.Release{"v1": {Promotions: done}}}
	if err := f.adv.Resume(context.Background(), []*types.Revision{left, finished}); err != nil {
		t.Fatal(err)
	}
	want := []types.Step{{Kind: types.StepPromote, Pipeline: "app", Revision: "r1", Index: index, Destination: prod, Tag: "v1"}}
	if diff := cmp.Diff(want, f.pub.take()); diff != "" {
		t.Errorf("resumed (-want +got):\n%s", diff)
	}
}

func withTag(s types.Step, tag string) types.Step       { s.Tag = tag; return s }
func withDestination(s types.Step, d string) types.Step { s.Destination = d; return s }
