package promote

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/promoter-dev/promoter/internal/registry"
)

// blobCopier moves blobs from the source repository to one destination repository with
// raw distribution API calls, because go-containerregistry does not say whether a blob was
// mounted or uploaded, and needs three requests (POST, PATCH, PUT) where a monolithic upload
// needs two (POST, PUT). The bytes it uploads come from its blobSource.
type blobCopier struct {
	src    name.Repository
	dst    name.Repository
	client *http.Client
	// mount is true when source and destination share a registry: blobs are mounted
	// across repositories, no byte moves.
	mount  bool
	source blobSource
	limits *limits
	retry  registry.RetryPolicy
	log    *slog.Logger
}

// newBlobCopier copies to dst the blobs of src, uploading what source gives it.
func (p *Promoter) newBlobCopier(ctx context.Context, src, dst name.Repository, source blobSource) (*blobCopier, error) {
	mount := src.Registry.String() == dst.Registry.String() && src.Scheme() == dst.Scheme()
	scopes := []string{dst.Scope(transport.PushScope)}
	if mount && src.String() != dst.String() {
		scopes = append(scopes, src.Scope(transport.PullScope))
	}
	rt, err := p.reg.HTTPTransport(ctx, dst, scopes...)
	if err != nil {
		return nil, err
	}
	return &blobCopier{src: src, dst: dst, client: &http.Client{Transport: rt}, mount: mount && src.String() != dst.String(),
		source: source, limits: p.limits, retry: p.reg.RetryPolicy(), log: p.log}, nil
}

// exists asks the destination for a blob with HEAD.
func (b *blobCopier) exists(ctx context.Context, d v1.Hash) (bool, error) {
	release, err := b.limits.acquire(ctx, b.dst.RegistryStr())
	if err != nil {
		return false, err
	}
	defer release()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, b.url("/v2/"+b.dst.RepositoryStr()+"/blobs/"+d.String()), nil)
	if err != nil {
		return false, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if err := registry.CheckError(resp, http.StatusOK, http.StatusNotFound); err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK, nil
}

// predict is the dry run of copy: HEAD only.
func (b *blobCopier) predict(ctx context.Context, desc v1.Descriptor) (Action, error) {
	ok, err := b.exists(ctx, desc.Digest)
	switch {
	case err != nil:
		return "", fmt.Errorf("checking blob %s in %s: %w", desc.Digest, b.dst, err)
	case ok:
		return Skip, nil
	case b.mount:
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
		b.log.Debug("retrying blob", "digest", desc.Digest.String(), "destination", b.dst.String(), "attempt", attempt, "wait", wait, "error", err)
	})
	if err != nil {
		return "", fmt.Errorf("copying blob %s to %s: %w", desc.Digest, b.dst, err)
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
	defer body.Close()
	return Copy, b.put(ctx, desc, location, body)
}

// start opens an upload session, asking for a cross-repository mount when source and
// destination share a registry: 201 means mounted, 202 means upload the bytes.
func (b *blobCopier) start(ctx context.Context, d v1.Hash) (location string, mounted bool, err error) {
	release, err := b.limits.acquire(ctx, b.dst.RegistryStr())
	if err != nil {
		return "", false, err
	}
	defer release()
	u := b.url("/v2/" + b.dst.RepositoryStr() + "/blobs/uploads/")
	if b.mount {
		u += "?" + url.Values{"mount": {d.String()}, "from": {b.src.RepositoryStr()}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	if err := registry.CheckError(resp, http.StatusCreated, http.StatusAccepted); err != nil {
		return "", false, err
	}
	if resp.StatusCode == http.StatusCreated {
		return "", true, nil
	}
	loc, err := uploadLocation(resp)
	return loc, false, err
}

// put ends the upload session at location with one PUT of body, desc.Size bytes: memory
// stays at the HTTP stack's buffers whatever the blob's size. The destination checks the
// digest.
func (b *blobCopier) put(ctx context.Context, desc v1.Descriptor, location string, body io.Reader) error {
	u, err := url.Parse(location)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", desc.Digest.String())
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), body)
	if err != nil {
		return err
	}
	req.ContentLength = desc.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return registry.CheckError(resp, http.StatusCreated, http.StatusNoContent)
}

func (b *blobCopier) url(path string) string {
	return (&url.URL{Scheme: b.dst.Scheme(), Host: b.dst.RegistryStr(), Path: path}).String()
}

// uploadLocation resolves an upload session's Location header against the request URL.
func uploadLocation(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("registry %s started an upload without a Location header", resp.Request.URL.Host)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("upload location %q: %w", loc, err)
	}
	return resp.Request.URL.ResolveReference(u).String(), nil
}
