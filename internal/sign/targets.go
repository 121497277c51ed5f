package sign

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/registry"
)

// target is one manifest to sign or verify.
type target struct {
	digest   name.Digest
	platform string // "" for an index
}

// resolve lists what signing ref covers: an index and its platform children (attestation
// manifests excluded: they are not runnable images and cosign does not sign them), or a
// lone image. A tag is resolved once, so everything listed belongs to the same index.
func resolve(ctx context.Context, reg registry.Client, ref string) ([]target, error) {
	r, err := reg.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, reg.Remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", r, err)
	}
	repo := r.Context()
	if !desc.MediaType.IsIndex() {
		t := target{digest: repo.Digest(desc.Digest.String())}
		if desc.MediaType.IsImage() {
			// A lone image names its platform only in its config; worth one request so the
			// output says what was signed.
			if img, err := desc.Image(); err == nil {
				if cf, err := img.ConfigFile(); err == nil && cf.OS != "" {
					t.platform = cf.Platform().String()
				}
			}
		}
		return []target{t}, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", r, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading index %s: %w", r, err)
	}
	out := []target{{digest: repo.Digest(desc.Digest.String())}}
	for _, m := range im.Manifests {
		if registry.IsAttestation(m) {
			continue
		}
		t := target{digest: repo.Digest(m.Digest.String())}
		if m.Platform != nil {
			t.platform = m.Platform.String()
		}
		out = append(out, t)
	}
	return out, nil
}

// maxParallel bounds the digests signed or verified at once.
const maxParallel = 8

// each runs fn for every target at once, at most maxParallel at a time, and returns
// their errors in the targets' order.
func each(targets []target, fn func(i int, t target) error) []error {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallel)
	for i, t := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(i, t)
		})
	}
	wg.Wait()
	return errs
}
