package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Blobs speaks the distribution blob API to one repository with raw requests, for what
// go-containerregistry does not expose: whether a blob was mounted or uploaded, and a
// monolithic upload (POST, PUT) where it needs three requests (POST, PATCH, PUT). Its
// requests go through the authenticated, retrying transport of HTTPTransport; a streamed
// upload cannot be replayed there, so its caller starts it over (RetryPolicy.Do).
type Blobs struct {
	repo   name.Repository
	client *http.Client
}

// Blobs returns the blob API of repo, authenticated for scopes (none means pull on repo;
// a cross-repository mount needs push on repo and pull on the source).
func (c Client) Blobs(ctx context.Context, repo name.Repository, scopes ...string) (*Blobs, error) {
	rt, err := c.HTTPTransport(ctx, repo, scopes...)
	if err != nil {
		return nil, err
	}
	return &Blobs{repo: repo, client: &http.Client{Transport: rt}}, nil
}

// Exists asks for a blob with HEAD.
func (b *Blobs) Exists(ctx context.Context, d v1.Hash) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, b.url("/blobs/"+d.String()), nil)
	if err != nil {
		return false, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if err := CheckError(resp, http.StatusOK, http.StatusNotFound); err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK, nil
}

// StartUpload opens an upload session for d, asking to mount it from the repository from
// (of the same registry) when from is not "": mounted means the registry linked the blob
// and no byte needs to move, else location is where to PutUpload it.
func (b *Blobs) StartUpload(ctx context.Context, d v1.Hash, from string) (location string, mounted bool, err error) {
	u := b.url("/blobs/uploads/")
	if from != "" {
		u += "?" + url.Values{"mount": {d.String()}, "from": {from}}.Encode()
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
	if err := CheckError(resp, http.StatusCreated, http.StatusAccepted); err != nil {
		return "", false, err
	}
	if resp.StatusCode == http.StatusCreated {
		return "", true, nil
	}
	loc, err := uploadLocation(resp)
	return loc, false, err
}

// PutUpload ends the upload session at location with one PUT of body, desc.Size bytes:
// memory stays at the HTTP stack's buffers whatever the blob's size. The registry checks
// the digest.
func (b *Blobs) PutUpload(ctx context.Context, location string, desc v1.Descriptor, body io.Reader) error {
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
	return CheckError(resp, http.StatusCreated, http.StatusNoContent)
}

// Get opens a blob. The bytes are not hashed here: whoever receives them computes the
// digest (a registry must refuse a mismatch), so hashing here too would only spend CPU. A
// body shorter or longer than desc.Size fails its reads.
func (b *Blobs) Get(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url("/blobs/"+desc.Digest.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s from %s: %w", desc.Digest, b.repo, err)
	}
	if err := CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("reading blob %s from %s: %w", desc.Digest, b.repo, err)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != desc.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("reading blob %s from %s: registry sends %d bytes, the manifest says %d", desc.Digest, b.repo, resp.ContentLength, desc.Size)
	}
	return &sizedReader{rc: resp.Body, left: desc.Size, what: desc.Digest.String()}, nil
}

func (b *Blobs) url(path string) string {
	return (&url.URL{Scheme: b.repo.Scheme(), Host: b.repo.RegistryStr(), Path: "/v2/" + b.repo.RepositoryStr() + path}).String()
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

// PushScopes are the token scopes of uploading to dst blobs of src: push on dst, and pull
// on src when a blob can be mounted from it (another repository of the same registry).
func PushScopes(src, dst name.Repository) []string {
	scopes := []string{dst.Scope(transport.PushScope)}
	if CanMount(src, dst) {
		scopes = append(scopes, src.Scope(transport.PullScope))
	}
	return scopes
}

// CanMount reports whether dst can mount blobs of src: another repository of the same
// registry, spoken to the same way.
func CanMount(src, dst name.Repository) bool {
	return src.Registry.String() == dst.Registry.String() && src.Scheme() == dst.Scheme() && src.String() != dst.String()
}
