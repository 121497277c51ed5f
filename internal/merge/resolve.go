package merge

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/backoff"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// headTimeout bounds one HEAD of the staging registry, so a registry that stops answering
// fails the attempt (to be retried) instead of holding it.
const headTimeout = 15 * time.Second

// head asks the registry for ref's descriptor within headTimeout.
func (m *Merger) head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, headTimeout)
	defer cancel()
	return remote.Head(ref, m.reg.Remote(ctx)...)
}

// held maps each platform of a revision (Platform.String()) to the digest its arch tag
// points at in the staging registry now, or "" when the tag does not exist.
type held map[string]string

// complete reports whether every platform of p has a digest.
func (h held) complete(p types.Pipeline) bool {
	for _, pl := range p.Platforms {
		if h[pl.String()] == "" {
			return false
		}
	}
	return true
}

// resolve asks the staging registry what every arch tag of revision points at now. This,
// not any notification, is what the merger acts on: an event's digest may be stale (the
// tag was pushed again since), forged, or name a tag deleted since.
func (m *Merger) resolve(ctx context.Context, p types.Pipeline, revision string) (held, error) {
	var (
		mu  sync.Mutex
		out = held{}
	)
	g, gctx := errgroup.WithContext(ctx)
	for _, pl := range p.Platforms {
		tag := p.ArchTag.Render(revision, pl)
		g.Go(func() error {
			ref, err := m.reg.ParseReference(p.Staging.Tag(tag))
			if err != nil {
				return err
			}
			d, err := m.head(gctx, ref)
			digest := ""
			switch {
			case err == nil:
				digest = d.Digest.String()
			case !registry.IsNotFound(err):
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

// settle bounds how long a notification's tag is watched for the event's digest. The
// registry sends a push notification when the manifest is stored, before it writes the
// tag (distribution's PutManifest: the listener fires in manifests.Put, then tags.Tag
// runs), so a fresh notification may briefly disagree with the registry.
const settle = 3 * time.Second

// await watches hint's tag until it points at hint's digest or settle has passed, as long
// as the registry holds that manifest at all: a digest it does not hold (deleted, or
// forged) is stale at once. It returns what the tag points at last ("" absent).
func (m *Merger) await(ctx context.Context, p types.Pipeline, hint *types.RegistryPush, got string) (string, error) {
	repo := p.Staging
	byDigest, err := m.reg.ParseReference(repo.Digest(hint.Digest))
	if err != nil {
		return got, nil // not a digest the registry could hold
	}
	if _, err := m.head(ctx, byDigest); err != nil {
		if registry.IsNotFound(err) {
			return got, nil
		}
		return "", fmt.Errorf("checking %s: %w", byDigest, err)
	}
	byTag, err := m.reg.ParseReference(repo.Tag(hint.Tag))
	if err != nil {
		return got, nil
	}
	deadline := time.Now().Add(settle)
	// distribution writes the tag right after the notification (well under a millisecond
	// later), so the first look comes soon; a slow registry is then polled less and less.
	poll := backoff.Policy{Min: time.Millisecond, Max: 500 * time.Millisecond}
	for try := 0; time.Now().Before(deadline); try++ {
		if err := backoff.Sleep(ctx, poll.Delay(try)); err != nil {
			return "", err
		}
		d, err := m.head(ctx, byTag)
		switch {
		case err == nil:
			got = d.Digest.String()
		case registry.IsNotFound(err):
			got = ""
		default:
			return "", fmt.Errorf("resolving %s: %w", byTag, err)
		}
		if got == hint.Digest {
			return got, nil
		}
	}
	return got, nil
}
