package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/types"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	return New(bustest.Revisions(t))
}

func TestUpdateCreatesThenEdits(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Get(ctx, "web", "abc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before any update: got %v, want ErrNotFound", err)
	}
	_, err := s.Update(ctx, "web", "abc", func(r *types.Revision) error {
		r.Platforms["linux/amd64"] = types.PlatformState{Tag: "abc-amd64", Digest: "sha256:1"}
		r.Phase = types.PhaseWaiting
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "web", "abc")
	if err != nil {
		t.Fatal(err)
	}
	if got.Pipeline != "web" || got.Revision != "abc" || got.Phase != types.PhaseWaiting || got.Platforms["linux/amd64"].Digest != "sha256:1" {
		t.Errorf("stored state: got %+v", got)
	}
	// ErrNoChange writes nothing and is not an error.
	before := got.Updated
	r, err := s.Update(ctx, "web", "abc", func(*types.Revision) error { return ErrNoChange })
	if err != nil || !r.Updated.Equal(before) {
		t.Errorf("ErrNoChange: got updated=%s err=%v, want unchanged", r.Updated, err)
	}
	// Other errors come back unchanged.
	boom := errors.New("boom")
	if _, err := s.Update(ctx, "web", "abc", func(*types.Revision) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: got %v, want boom", err)
	}
}

// Concurrent writers never lose an update: every increment lands exactly once.
func TestUpdateIsCompareAndSwap(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const writers = 8
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, "web", "race", func(r *types.Revision) error {
				r.Platforms[fmt.Sprintf("linux/p%d", i)] = types.PlatformState{Tag: fmt.Sprint(i)}
				return nil
			})
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Get(ctx, "web", "race")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Platforms) != writers {
		t.Errorf("platforms after %d concurrent writers: got %d (%v)", writers, len(got.Platforms), got.Platforms)
	}
}

func TestList(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, k := range [][2]string{{"web", "a"}, {"web", "b"}, {"api", "a"}} {
		if _, err := s.Update(ctx, k[0], k[1], func(r *types.Revision) error { r.Phase = types.PhaseWaiting; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.List(ctx, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("List all: got %d, %v; want 3", len(all), err)
	}
	web, err := s.List(ctx, "web")
	if err != nil || len(web) != 2 {
		t.Fatalf("List web: got %d, %v; want 2", len(web), err)
	}
}

// TestPageWalksKeysInOrder: pages follow key order, read only their own values, and the
// cursor of the last page is empty; a pipeline filter keeps other pipelines out, even one
// whose name starts the same.
func TestPageWalksKeysInOrder(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, k := range [][2]string{{"web", "c"}, {"web", "a"}, {"web", "b.1"}, {"webapp", "x"}, {"api", "z"}} {
		if _, err := s.Update(ctx, k[0], k[1], func(r *types.Revision) error { r.Phase = types.PhaseWaiting; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	walk := func(pipeline string, limit int) (pages [][]string) {
		after := ""
		for range 10 {
			revs, next, err := s.Page(ctx, pipeline, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			var page []string
			for _, r := range revs {
				page = append(page, Key(r.Pipeline, r.Revision))
			}
			pages = append(pages, page)
			if next == "" {
				return pages
			}
			after = next
		}
		t.Fatalf("no last page after 10")
		return nil
	}
	for _, tc := range []struct {
		name     string
		pipeline string
		limit    int
		want     [][]string
	}{
		{"every pipeline, two a page", "", 2, [][]string{{"api.z", "web.a"}, {"web.b.1", "web.c"}, {"webapp.x"}}},
		{"one pipeline, two a page", "web", 2, [][]string{{"web.a", "web.b.1"}, {"web.c"}}},
		{"one pipeline, one page", "web", 10, [][]string{{"web.a", "web.b.1", "web.c"}}},
		{"a pipeline with no state", "none", 10, [][]string{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, walk(tc.pipeline, tc.limit)); diff != "" {
				t.Errorf("pages (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := s.Page(ctx, "", "", 0); err == nil {
		t.Error("limit 0: got no error")
	}
}

// TestWatch: a watch sends each write of its pipeline from then on, in order, and ends
// with its context.
func TestWatch(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	set := func(pipeline, rev string, ph types.Phase) {
		t.Helper()
		if _, err := s.Update(ctx, pipeline, rev, func(r *types.Revision) error { r.Phase = ph; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set("web", "before", types.PhaseBuilding) // written before the watch: not sent
	ch, err := s.Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	set("api", "a1", types.PhaseBuilding) // another pipeline: not sent
	set("web", "r1", types.PhaseBuilding)
	set("web", "r1", types.PhaseWaiting)
	var got []string
	for len(got) < 2 {
		r := <-ch
		got = append(got, r.Revision+" "+string(r.Phase))
	}
	if diff := cmp.Diff([]string{"r1 building", "r1 waiting"}, got); diff != "" {
		t.Errorf("watched (-want +got):\n%s", diff)
	}
	cancel()
	for r := range ch {
		t.Errorf("after the context ended: %+v", r)
	}
}
