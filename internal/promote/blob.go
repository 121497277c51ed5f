package promote

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/promoter-dev/promoter/internal/registry"
)

// blobCopier moves blobs from the source repository to one destination repository through
// the registry's blob API (registry.Blobs), which says whether a blob was mounted or
// uploaded. The bytes it uploads come from its blobSource.
type blobCopier struct {
	src name.Repository
	dst *registry.Blobs
	// dstRepo is dst's repository; mountFrom is the source repository's name when blobs
	// are mounted from it (same registry), "" when they are uploaded.
	dstRepo   name.Repository
	mountFrom string
	source    blobSource
	limits    *limits
	retry     registry.RetryPolicy
	log       *slog.Logger
}

// newBlobCopier copies to dst the blobs of src, uploading what source gives it.
func (p *Promoter) newBlobCopier(ctx context.Context, src, dst name.Repository, source blobSource) (*blobCopier, error) {
	blobs, err := p.reg.Blobs(ctx, dst, registry.PushScopes(src, dst)...)
	if err != nil {
		return nil, err
	}
	b := &blobCopier{src: src, dst: blobs, dstRepo: dst, source: source, limits: p.limits, retry: p.reg.RetryPolicy(), log: p.log}
	if registry.CanMount(src, dst) {
		b.mountFrom = src.RepositoryStr()
	}
	return b, nil
}

// exists asks the destination for a blob.
func (b *blobCopier) exists(ctx context.Context, d v1.Hash) (bool, error) {
	release, err := b.limits.acquire(ctx, b.dstRepo.RegistryStr())
	if err != nil {
		return false, err
	}
	defer release()
	return b.dst.Exists(ctx, d)
}

// predict is the dry run of copy: HEAD only.
func (b *blobCopier) predict(ctx context.Context, desc v1.Descriptor) (Action, error) {
	ok, err := b.exists(ctx, desc.Digest)
	switch {
	case err != nil:
		return "", fmt.Errorf("checking blob %s in %s: %w", desc.Digest, b.dstRepo, err)
	case ok:
		return Skip, nil
	case b.mountFrom != "":
		return Mount, nil
	default:
		return Copy, nil
	}
}

// copy makes desc present in the destination, starting the whole transfer over (an
// upload session cannot be resumed after a failed streamed PUT) under the registry's
// retry policy, Retry-After included. It returns Skip, Mount or Copy.
func (b *blobCopier) copy(ctx context.Context, desc v1.Descriptor) (Action, error) {
	var action Action
	err := b.retry.Do(ctx, func(ctx context.Context) error {
		var err error
		action, err = b.try(ctx, desc)
		return err
	}, func(attempt int, wait time.Duration, err error) {
		b.log.Debug("retrying blob", "digest", desc.Digest.String(), "destination", b.dstRepo.String(), "attempt", attempt, "wait", wait, "error", err)
	})
	if err != nil {
		return "", fmt.Errorf("copying blob %s to %s: %w", desc.Digest, b.dstRepo, err)
	}
	return action, nil
}

func (b *blobCopier) try(ctx context.Context, desc v1.Descriptor) (Action, error) {
	if ok, err := b.exists(ctx, desc.Digest); err != nil {
		return "", err
	} else if ok {
		b.source.Skip(desc.Digest)
		return Skip, nil
	}
	location, mounted, err := b.start(ctx, desc.Digest)
	if err != nil {
		return "", err
	}
	if mounted {
		b.source.Skip(desc.Digest)
		return Mount, nil
	}
	body, err := b.source.Open(ctx, desc)
	if err != nil {
		return "", err
	}
	// Closing body gives back the request slots the upload holds, so it is closed when
	// the PUT returned, not by the HTTP transport once the last byte is written: a slow
	// destination still works on the request then, and must count against its host's
	// limit until it answers.
	defer body.Close()
	return Copy, b.dst.PutUpload(ctx, location, desc, struct{ io.Reader }{body})
}

// start opens an upload session, asking for a cross-repository mount when source and
// destination share a registry.
func (b *blobCopier) start(ctx context.Context, d v1.Hash) (location string, mounted bool, err error) {
	release, err := b.limits.acquire(ctx, b.dstRepo.RegistryStr())
	if err != nil {
		return "", false, err
	}
	defer release()
	return b.dst.StartUpload(ctx, d, b.mountFrom)
}
