package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

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

// Update hands back what the run of the function that counted decided: under contention
// that is the last run, which saw the state every other writer left.
func TestUpdateReturnsWhatTheWrittenRunDecided(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const writers = 8
	var wg sync.WaitGroup
	seen := make([]int, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, n, err := Update(ctx, s, "web", "count", func(r *types.Revision) (int, error) {
				r.Platforms[fmt.Sprintf("linux/p%d", i)] = types.PlatformState{Tag: fmt.Sprint(i)}
				return len(r.Platforms), nil
			})
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
				return
			}
			if n != len(r.Platforms) {
				t.Errorf("writer %d: got %d, want the platforms of the state it wrote (%d)", i, n, len(r.Platforms))
			}
			seen[i] = n
		}()
	}
	wg.Wait()
	// Each write added one platform to what the one before left: 1..writers, each once.
	slices.Sort(seen)
	want := make([]int, writers)
	for i := range want {
		want[i] = i + 1
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("values handed back (-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		fnErr   error
		wantErr error
	}{
		{name: "no change: the value, no error", fnErr: ErrNoChange},
		{name: "refused: the value and the error", fnErr: types.ErrTransition, wantErr: types.ErrTransition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, v, err := Update(ctx, s, "web", "count", func(*types.Revision) (string, error) { return "decided", tc.fnErr })
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if v != "decided" {
				t.Errorf("got value %q, want %q", v, "decided")
			}
		})
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

// walk follows the pages of q from the first to the last (at most 50), and returns the
// keys on each.
func walk(t *testing.T, s *Store, q Query) (pages [][]string) {
	t.Helper()
	for range 50 {
		revs, next, err := s.Page(context.Background(), q)
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
		q.After = next
	}
	t.Fatalf("no last page after 50")
	return nil
}

// TestPageOrders: key order follows the keys, recent order the last writes; the cursor of
// the last page is empty; a pipeline filter keeps other pipelines out, even one whose name
// starts the same, and a deleted revision is not listed.
func TestPageOrders(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	set := func(k ...string) {
		t.Helper()
		if _, err := s.Update(ctx, k[0], k[1], func(r *types.Revision) error { r.Phase = types.PhaseWaiting; r.Reason += "."; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range [][]string{{"web", "c"}, {"web", "a"}, {"web", "b.1"}, {"webapp", "x"}, {"api", "z"}, {"web", "gone"}} {
		set(k...)
	}
	set("web", "c") // written again: the most recent of web
	if err := s.kv.Delete(ctx, Key("web", "gone")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		q    Query
		want [][]string
	}{
		{"every pipeline, two a page", Query{Limit: 2}, [][]string{{"api.z", "web.a"}, {"web.b.1", "web.c"}, {"webapp.x"}}},
		{"one pipeline, two a page", Query{Pipeline: "web", Limit: 2, Order: ByKey}, [][]string{{"web.a", "web.b.1"}, {"web.c"}}},
		{"one pipeline, one page", Query{Pipeline: "web", Limit: 10}, [][]string{{"web.a", "web.b.1", "web.c"}}},
		{"a pipeline with no state", Query{Pipeline: "none", Limit: 10}, [][]string{nil}},
		{"recent, every pipeline", Query{Order: ByRecent, Limit: 2}, [][]string{{"web.c", "api.z"}, {"webapp.x", "web.b.1"}, {"web.a"}}},
		{"recent, one pipeline", Query{Order: ByRecent, Pipeline: "web", Limit: 10}, [][]string{{"web.c", "web.b.1", "web.a"}}},
		{"recent, a phase that matches none", Query{Order: ByRecent, Phase: types.PhaseFailed, Limit: 10}, [][]string{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, walk(t, s, tc.q)); diff != "" {
				t.Errorf("pages (-want +got):\n%s", diff)
			}
		})
	}

	// A revision written while a user pages recent first moves to the first page: the
	// next pages hold what was last written before the cursor, so nothing shows twice.
	first, next, err := s.Page(ctx, Query{Order: ByRecent, Limit: 2})
	if err != nil || len(first) != 2 || next == "" {
		t.Fatalf("first page: %d, %q, %v", len(first), next, err)
	}
	set("web", "a")
	rest := walk(t, s, Query{Order: ByRecent, Limit: 2, After: next})
	if diff := cmp.Diff([][]string{{"webapp.x", "web.b.1"}}, rest); diff != "" {
		t.Errorf("pages after a write (-want +got):\n%s", diff)
	}

	for _, q := range []Query{{Limit: 0}, {Limit: 1, Order: "oldest"}, {Limit: 1, Order: ByRecent, After: "web.a"}} {
		if _, _, err := s.Page(ctx, q); err == nil {
			t.Errorf("%+v: got no error", q)
		}
	}
	if _, _, err := s.Page(ctx, Query{Limit: 1, Order: ByRecent, After: "web.a"}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("a key as a recent cursor: %v, want ErrBadCursor", err)
	}
}

// countingKV counts the values read from the bucket.
type countingKV struct {
	jetstream.KeyValue
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

// pageAll lists every page of q, checking that each reads at most q.MaxRead revisions and
// holds only q.Phase, and returns the revisions found and the number of pages.
func pageAll(t *testing.T, s *Store, kv *countingKV, q Query) (found map[string]bool, pages int) {
	t.Helper()
	found = map[string]bool{}
	for {
		kv.gets.Store(0)
		revs, next, err := s.Page(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if kv.gets.Load() > int64(q.MaxRead) {
			t.Fatalf("page %d read %d revisions, want at most %d", pages, kv.gets.Load(), q.MaxRead)
		}
		for _, r := range revs {
			if r.Phase != q.Phase {
				t.Fatalf("phase filter returned %s in %s", r.Revision, r.Phase)
			}
			found[r.Revision] = true
		}
		if next == "" {
			return found, pages
		}
		q.After = next
	}
}

// TestPagesOf10000: in either order, a page of 10,000 revisions reads that page's values
// only, and a phase filter finds the few failed ones over several pages, none of which
// reads more than MaxRead.
func TestPagesOf10000(t *testing.T) {
	kv := &countingKV{KeyValue: bustest.Revisions(t)}
	s := New(kv)
	ctx := context.Background()
	failed := map[string]bool{}
	for i := range 10000 {
		rev := fmt.Sprintf("r%05d", i)
		phase := types.PhasePromoted
		if i%1500 == 7 {
			phase = types.PhaseFailed
			failed[rev] = true
		}
		data, _ := json.Marshal(types.Revision{Pipeline: "web", Revision: rev, Phase: phase})
		if _, err := kv.Create(ctx, Key("web", rev), data); err != nil {
			t.Fatal(err)
		}
	}
	const maxRead = 1000
	for _, order := range []Order{ByKey, ByRecent} {
		t.Run(string(order), func(t *testing.T) {
			kv.gets.Store(0)
			revs, next, err := s.Page(ctx, Query{Order: order, Limit: 50})
			if err != nil || len(revs) != 50 || next == "" || kv.gets.Load() != 50 {
				t.Fatalf("first page: %d revisions, next %q, %d read, %v; want 50, a cursor, 50", len(revs), next, kv.gets.Load(), err)
			}
			if order == ByRecent && revs[0].Revision != "r09999" {
				t.Errorf("recent first: starts with %s", revs[0].Revision)
			}
			found, pages := pageAll(t, s, kv, Query{Order: order, Phase: types.PhaseFailed, Limit: 50, MaxRead: maxRead})
			if diff := cmp.Diff(failed, found); diff != "" || pages < 10000/maxRead {
				t.Errorf("failed revisions over %d pages (-want +got):\n%s", pages, diff)
			}
		})
	}
	// A full page of matches ends where its last match is; a scan that reached its bound
	// ends where it stopped, with nothing found if need be.
	revs, next, err := s.Page(ctx, Query{Phase: types.PhaseFailed, Limit: 1, MaxRead: maxRead})
	if err != nil || len(revs) != 1 || next != "web.r00007" {
		t.Errorf("one failed: %d, next %q, %v; want 1, web.r00007", len(revs), next, err)
	}
	revs, next, err = s.Page(ctx, Query{Phase: types.PhaseFailed, Limit: 5, MaxRead: maxRead, After: "web.r00007"})
	if err != nil || len(revs) != 0 || next != "web.r01007" {
		t.Errorf("failed after r00007: %d, next %q, %v; want 0, web.r01007", len(revs), next, err)
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
