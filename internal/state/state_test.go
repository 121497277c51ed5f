package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	n := testenv.StartNATS(t)
	b, err := bus.Open(context.Background(), bus.Options{URL: n.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := b.Revisions()
	if err != nil {
		t.Fatal(err)
	}
	return New(kv)
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
