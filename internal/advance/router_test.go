package advance

import (
	"context"
	"errors"
	"testing"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestRouterBuildsNothingForAMergeOnlyPipeline: a source change of a pipeline without a
// source (one stored before the configuration dropped it) is dropped for good; the revision
// gets no state and nothing is dispatched, so the arch tags CI pushes decide.
func TestRouterBuildsNothingForAMergeOnlyPipeline(t *testing.T) {
	ctx := context.Background()
	p := pipeline(false, "prod.example/app")
	if p.Builds() {
		t.Fatalf("the test pipeline has source %+v; want a merge-only one", p.Source)
	}
	f := newFixture(t, p)
	merger, err := merge.New(f.store, registry.Client{}, []types.Pipeline{p})
	if err != nil {
		t.Fatal(err)
	}
	disp, err := builders.NewDispatcher(f.pub, registry.Client{}, []types.Pipeline{p})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouter(f.adv, merger, disp)
	if err != nil {
		t.Fatal(err)
	}
	err = rt.SourceChanged(ctx, types.SourceChanged{ID: "d1", Pipeline: p.Name, Repo: "https://git.example/app", Ref: "refs/heads/main", Revision: "r1"})
	if !errors.Is(err, bus.ErrPermanent) {
		t.Fatalf("got %v, want a permanent error (the message is dropped, never retried)", err)
	}
	if _, err := f.store.Get(ctx, p.Name, "r1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("revision state: got %v, want none (no build was dispatched)", err)
	}
	if steps := f.pub.take(); len(steps) != 0 {
		t.Errorf("published %+v, want nothing", steps)
	}
}

func TestRevisionKey(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"push", `{"pipeline":"web","revision":"abc123","platform":{"os":"linux"}}`, "web/abc123"},
		{"no revision", `{"pipeline":"web"}`, ""},
		{"malformed", `{"pipeline":`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := revisionKey([]byte(tt.data)); got != tt.want {
				t.Errorf("revisionKey(%s) = %q, want %q", tt.data, got, tt.want)
			}
		})
	}
}
