package promote

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
// needs two (POST, PUT).
type blobCopier struct {
	p   *Promoter
	src name.Repository
	// srcClient reads source blobs; see plan.blobClient.
	srcClient *http.Client
	dst       name.Repository
	client    *http.Client
	// mount is true when source and destination share a registry: blobs are mounted
	// across repositories, no byte moves.
	mount bool
	// share is this destination's part in the shared source reads of the promotions it
	// runs with (fanout.go); nil when it reads on its own.
	share *sharing
}

func (p *Promoter) newBlobCopier(ctx context.Context, pl *plan, dst name.Repository) (*blobCopier, error) {
	src := pl.src.Context()
	mount := src.Registry.String() == dst.Registry.String() && src.Scheme() == dst.Scheme()
	scopes := []string{dst.Scope(transport.PushScope)}
	if mount && src.String() != dst.String() {
		scopes = append(scopes, src.Scope(transport.PullScope))
	}
	rt, err := p.reg.HTTPTransport(ctx, dst, scopes...)
	if err != nil {
		return nil, err
	}
	return &blobCopier{p: p, src: src, srcClient: pl.blobClient, dst: dst, client: &http.Client{Transport: rt}, mount: mount}, nil
}

// exists asks the destination for a blob with HEAD.
func (b *blobCopier) exists(ctx context.Context, d v1.Hash) (bool, error) {
	release, err := b.p.acquire(ctx, b.dst.RegistryStr())
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

// copy makes desc present in the destination, starting the whole transfer over (an
// upload session cannot be resumed after a failed streamed PUT) under the registry's
// retry policy, Retry-After included. It returns Skip, Mount or Copy.
func (b *blobCopier) copy(ctx context.Context, desc v1.Descriptor) (Action, error) {
	var action Action
	err := b.p.reg.RetryPolicy().Do(ctx, func(ctx context.Context) error {
		var err error
		action, err = b.try(ctx, desc)
		return err
	}, func(attempt int, wait time.Duration, err error) {
		b.p.log.Debug("retrying blob", "digest", desc.Digest.String(), "destination", b.dst.String(), "attempt", attempt, "wait", wait, "error", err)
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
		b.share.withdraw(desc.Digest)
		return Skip, nil
	}
	location, mounted, err := b.start(ctx, desc.Digest)
	if err != nil {
		return "", err
	}
	if mounted {
		b.share.withdraw(desc.Digest)
		return Mount, nil
	}
	return Copy, b.share.upload(ctx, b, desc, location)
}

// embedded reports whether desc carries its bytes (the OCI empty config): uploading it
// needs no download.
func embedded(desc v1.Descriptor) bool {
	return int64(len(desc.Data)) == desc.Size && desc.Size > 0
}

// start opens an upload session, asking for a cross-repository mount when source and
// destination share a registry: 201 means mounted, 202 means upload the bytes.
func (b *blobCopier) start(ctx context.Context, d v1.Hash) (location string, mounted bool, err error) {
	release, err := b.p.acquire(ctx, b.dst.RegistryStr())
	if err != nil {
		return "", false, err
	}
	defer release()
	u := b.url("/v2/" + b.dst.RepositoryStr() + "/blobs/uploads/")
	if b.mount && b.src.String() != b.dst.String() {
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

// upload streams the blob from the source into the session with one PUT: memory stays at
// the HTTP stack's buffers whatever the blob's size. The destination checks the digest.
func (b *blobCopier) upload(ctx context.Context, desc v1.Descriptor, location string) error {
	// Hold a request slot on both hosts while bytes flow from one to the other.
	release, err := b.p.acquire(ctx, b.src.RegistryStr(), b.dst.RegistryStr())
	if err != nil {
		return err
	}
	defer release()
	var body io.ReadCloser
	if embedded(desc) {
		// Small blobs embedded in the manifest need no download.
		body = io.NopCloser(bytes.NewReader(desc.Data))
	} else {
		rc, err := b.download(ctx, desc)
		if err != nil {
			return err
		}
		body = rc
	}
	defer body.Close()
	return b.put(ctx, desc, location, body)
}

// put ends the upload session at location with one PUT of body, desc.Size bytes.
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

// download opens the source blob. The bytes are not hashed here: the destination computes
// the digest of what it receives and refuses a mismatch (the distribution spec requires
// it), so hashing on our side too would only spend CPU. A short or long body is caught by
// the length check.
func (b *blobCopier) download(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	u := (&url.URL{Scheme: b.src.Scheme(), Host: b.src.RegistryStr(), Path: "/v2/" + b.src.RepositoryStr() + "/blobs/" + desc.Digest.String()}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.srcClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s from %s: %w", desc.Digest, b.src, err)
	}
	if err := registry.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("reading blob %s from %s: %w", desc.Digest, b.src, err)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("reading blob %s from %s: registry sends %d bytes, the manifest says %d", desc.Digest, b.src, resp.ContentLength, desc.Size)
	}
	return &sizedReader{rc: resp.Body, left: desc.Size, what: desc.Digest.String()}, nil
}

// sizedReader fails when the body ends before, or runs past, the expected size.
type sizedReader struct {
	rc   io.ReadCloser
	left int64
	what string
}

func (r *sizedReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	switch {
	case r.left < 0:
		return n, fmt.Errorf("blob %s is longer than its descriptor says", r.what)
	case err == io.EOF && r.left > 0:
		return n, fmt.Errorf("blob %s ended %d bytes early: %w", r.what, r.left, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (r *sizedReader) Close() error { return r.rc.Close() }

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
