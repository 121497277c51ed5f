package registry

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// UserAgent is sent with every registry request.
const UserAgent = "promoter"

// Client holds what every registry call needs. The zero value is usable: default keychain,
// HTTPS except for loopback and private addresses (go-containerregistry's rule), the
// default transport behind the retrying one (DefaultRetryPolicy).
type Client struct {
	// Insecure hosts are spoken to over plain HTTP.
	Insecure []string
	// InsecureAll speaks plain HTTP to every host (the CLI's --insecure).
	InsecureAll bool
	// Keychain resolves credentials; nil means authn.DefaultKeychain (docker config).
	Keychain authn.Keychain
	// Transport is the base HTTP transport; nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Retry is the policy of the retrying transport every request goes through: 408, 429,
	// 5xx and connection resets are tried again with exponential backoff and jitter,
	// honouring Retry-After. nil means DefaultRetryPolicy(); MaxAttempts 1 disables retries.
	Retry *RetryPolicy

	// pool, set by Reusing, shares authenticated transports between calls.
	pool *pool
}

// ParseReference parses an image reference, honouring the insecure hosts.
func (c Client) ParseReference(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		ref, err = name.ParseReference(s)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing reference %q: %w", s, err)
	}
	if c.insecure(ref.Context().RegistryStr()) {
		ref, err = name.ParseReference(s, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("parsing reference %q: %w", s, err)
		}
	}
	return ref, nil
}

// ParseRepository parses "host/path", honouring the insecure hosts.
func (c Client) ParseRepository(s string) (name.Repository, error) {
	var opts []name.Option
	if host, _, ok := cut(s); ok && c.insecure(host) {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(s, opts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("parsing repository %q: %w", s, err)
	}
	return repo, nil
}

func (c Client) insecure(host string) bool {
	return c.InsecureAll || slices.Contains(c.Insecure, host)
}

// Remote returns the go-containerregistry options for one operation under ctx. A reusing
// Client (Reusing) adds its pool's Puller, so a read authenticates only if its repository
// was not read in this generation of the pool. Writes go through Writing.
func (c Client) Remote(ctx context.Context) []remote.Option {
	opts := append(c.baseOptions(), remote.WithContext(ctx))
	if c.pool != nil {
		opts = append(opts, remote.Reuse(c.pool.current(c).puller))
	}
	return opts
}

// Writing returns the options of one operation that writes to repo: Remote's, and for a
// reusing Client the pool's push transport for repo, so the write pings and authenticates
// only on the pool's first write to repo. That transport holds a token for repo alone: a
// blob mounted from another repository is uploaded instead (the registry answers the mount
// with an upload), so an operation that mounts should use Remote.
//
// go-containerregistry's Pusher is not shared between operations: it remembers every
// digest it wrote and skips writing it again, which would trust a memory of the registry
// over the registry (a manifest deleted since would never be written back).
func (c Client) Writing(ctx context.Context, repo name.Repository) ([]remote.Option, error) {
	opts := c.Remote(ctx)
	if c.pool == nil {
		return opts, nil
	}
	rt, err := c.HTTPTransport(ctx, repo, repo.Scope(transport.PushScope))
	if err != nil {
		return nil, err
	}
	// An authenticated transport (a transport.Wrapper) is used as it is: no ping, no token.
	return append(opts, remote.WithTransport(rt)), nil
}

// baseOptions are the options of every call, without a context.
func (c Client) baseOptions() []remote.Option {
	return []remote.Option{
		remote.WithAuthFromKeychain(c.keychain()),
		remote.WithUserAgent(UserAgent),
		remote.WithTransport(c.RoundTripper()),
		// Our transport already retries; go-containerregistry's own retry on top of it
		// would multiply the attempts (6 x 3) and ignore Retry-After.
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Second, Factor: 1, Steps: 1}),
	}
}

func (c Client) keychain() authn.Keychain {
	if c.Keychain == nil {
		return authn.DefaultKeychain
	}
	return c.Keychain
}

// defaultTransport is go-containerregistry's DefaultTransport with 64 KiB socket buffers
// instead of 4 KiB: blob bodies then move in 16 times fewer writes and reads, which is
// measurable when copying hundreds of MiB (BenchmarkPromoteVsCrane in internal/promote).
var defaultTransport = func() http.RoundTripper {
	t, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return remote.DefaultTransport
	}
	t = t.Clone()
	t.WriteBufferSize = 64 << 10
	t.ReadBufferSize = 64 << 10
	return t
}()

// RoundTripper is the unauthenticated HTTP transport of every registry request: Transport
// (or go-containerregistry's default) behind the retrying transport.
func (c Client) RoundTripper() http.RoundTripper {
	base := c.Transport
	if base == nil {
		base = defaultTransport
	}
	return NewRetryTransport(base, c.RetryPolicy())
}

// RetryPolicy is the policy of c's requests (Retry, or DefaultRetryPolicy), which an
// operation that retries itself (RetryPolicy.Do) follows too.
func (c Client) RetryPolicy() RetryPolicy {
	if c.Retry != nil {
		return c.Retry.withDefaults()
	}
	return DefaultRetryPolicy()
}

// HTTPTransport returns an authenticated transport for raw distribution API calls on repo
// (blob mounts and uploads that go-containerregistry does not expose), with the given
// token scopes (for example repo.Scope(transport.PushScope)); none means pull on repo. A
// reusing Client hands out the same transport for the same repository and scopes.
func (c Client) HTTPTransport(ctx context.Context, repo name.Repository, scopes ...string) (http.RoundTripper, error) {
	if len(scopes) == 0 {
		scopes = []string{repo.Scope(transport.PullScope)}
	}
	if c.pool == nil {
		return c.authenticate(ctx, c.RoundTripper(), repo, scopes)
	}
	g := c.pool.current(c)
	return g.transport(repo, scopes, func() (http.RoundTripper, error) { return c.authenticate(ctx, g.base, repo, scopes) })
}

func cut(s string) (host, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
