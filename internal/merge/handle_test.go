package merge

import (
	"context"
	"errors"
	"testing"

	"github.com/promoter-dev/promoter/internal/types"
)

// nexts records the revisions a handler hands on.
type nexts struct{ revs []*types.Revision }

func (n *nexts) Next(_ context.Context, r *types.Revision) error {
	n.revs = append(n.revs, r)
	return nil
}

// TestBuildResultHandler: a build's success is the evidence the merge waited for, so the
// revision is merged then and handed on; a final failure fails it; a result of a pipeline
// that is not configured is ErrUnknownPipeline.
func TestBuildResultHandler(t *testing.T) {
	ctx := context.Background()
	const amd, arm = "linux/amd64", "linux/arm64"
	result := func(f *fixture, pipeline, key string, outcome types.BuildOutcome, digest string) types.BuildResult {
		pl := types.MustPlatform(key)
		return types.BuildResult{
			Request: types.BuildRequest{Pipeline: pipeline, Revision: "r1", Platform: pl, Image: f.repo + ":" + f.p.ArchTag.Render("r1", pl)},
			Outcome: outcome, Final: true, Attempt: 1, Job: "build-" + key, Digest: digest, Reason: "exit 1",
		}
	}
	tests := []struct {
		name string
		// results are handled in order; the last one's outcome is checked.
		results   func(f *fixture) []types.BuildResult
		wantErr   error
		wantPhase types.Phase
		wantNext  int // revisions handed on, in all
	}{
		{
			name: "the last build reports: merged",
			results: func(f *fixture) []types.BuildResult {
				a, b := f.push(t, "r1", amd, amd, t1), f.push(t, "r1", arm, arm, t1)
				return []types.BuildResult{result(f, "app", amd, types.BuildSucceeded, a.Digest), result(f, "app", arm, types.BuildSucceeded, b.Digest)}
			},
			wantPhase: types.PhaseMerged, wantNext: 2,
		},
		{
			name: "a build failed for good",
			results: func(f *fixture) []types.BuildResult {
				return []types.BuildResult{result(f, "app", amd, types.BuildFailed, "")}
			},
			wantPhase: types.PhaseFailed,
		},
		{
			name: "a pipeline that is not configured",
			results: func(f *fixture) []types.BuildResult {
				return []types.BuildResult{result(f, "gone", amd, types.BuildSucceeded, "sha256:1")}
			},
			wantErr: types.ErrUnknownPipeline,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.p.Source = types.Source{Repo: "https://git.example/team/app"} // it builds: it waits for its builds
			next := &nexts{}
			handle := f.merger().BuildResultHandler(next)
			var err error
			for _, res := range tc.results(f) {
				if err = handle(ctx, res); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if len(next.revs) != tc.wantNext {
				t.Errorf("handed on %d revisions, want %d", len(next.revs), tc.wantNext)
			}
			if tc.wantErr != nil {
				return
			}
			if got := f.get(t, "r1"); got.Phase != tc.wantPhase {
				t.Errorf("phase %q (%s), want %q", got.Phase, got.Reason, tc.wantPhase)
			}
		})
	}
}

// TestPushHandlerUnknownPipeline: a push of a pipeline that is not configured is
// ErrUnknownPipeline, whichever way it comes in, and is handed to nobody.
func TestPushHandlerUnknownPipeline(t *testing.T) {
	f := newFixture(t)
	next := &nexts{}
	ev := types.RegistryPush{ID: "e1", Pipeline: "gone", Revision: "r1", Platform: types.MustPlatform("linux/amd64"), Tag: "r1-amd64"}
	if err := f.merger().PushHandler(next)(context.Background(), ev); !errors.Is(err, types.ErrUnknownPipeline) {
		t.Fatalf("got %v, want ErrUnknownPipeline", err)
	}
	if len(next.revs) != 0 {
		t.Errorf("handed on %+v, want nothing", next.revs)
	}
}
