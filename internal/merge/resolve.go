package merge

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/types"
)

// held maps each platform of a revision (Platform.String()) to the digest its arch tag
// points at in the staging registry now, or "" when the tag does not exist.
type held map[string]string

// complete reports whether every platform of p has a digest.
func (h held) complete(p config.Pipeline) bool {
	for _, pl := range p.PlatformList() {
		if h[pl.String()] == "" {
			return false
		}
	}
	return true
}

// resolve asks the staging registry what every arch tag of revision points at now. This,
// not any notification, is what the merger acts on: an event's digest may be stale (the
// tag was pushed again since), forged, or name a tag deleted since.
func (m *Merger) resolve(ctx context.Context, p config.Pipeline, revision string) (held, error) {
	var (
		mu  sync.Mutex
		out = held{}
	)
	g, gctx := errgroup.WithContext(ctx)
	for _, pl := range p.PlatformList() {
		tag := types.ArchTag(p.ArchTag).Render(revision, pl)
		g.Go(func() error {
			ref, err := m.Registry.ParseReference(types.Repository(p.Staging).Tag(tag))
			if err != nil {
				return err
			}
			d, err := remote.Head(ref, m.Registry.Remote(gctx)...)
			digest := ""
			switch {
			case err == nil:
				digest = d.Digest.String()
			case !isNotFound(err):
				return fmt.Errorf("resolving %s: %w", ref, err)
			}
			mu.Lock()
			out[pl.String()] = digest
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}
