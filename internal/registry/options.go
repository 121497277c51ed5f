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

// Remote returns the go-containerregistry options for one operation under ctx.
func (c Client) Remote(ctx context.Context) []remote.Option {
	kc := c.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithUserAgent(UserAgent),
		remote.WithTransport(c.RoundTripper()),
		// Our transport already retries; go-containerregistry's own retry on top of it
		// would multiply the attempts (6 x 3) and ignore Retry-After.
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Second, Factor: 1, Steps: 1}),
	}
	return opts
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
	p := DefaultRetryPolicy()
	if c.Retry != nil {
		p = *c.Retry
	}
	return NewRetryTransport(base, p)
}

// HTTPTransport returns an authenticated transport for raw distribution API calls on repo
// (blob mounts and uploads that go-containerregistry does not expose), with the given
// token scopes (for example repo.Scope(transport.PushScope)); none means pull on repo.
func (c Client) HTTPTransport(ctx context.Context, repo name.Repository, scopes ...string) (http.RoundTripper, error) {
	kc := c.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("resolving credentials for %s: %w", repo.RegistryStr(), err)
	}
	if len(scopes) == 0 {
		scopes = []string{repo.Scope(transport.PullScope)}
	}
	rt := transport.NewUserAgent(c.RoundTripper(), UserAgent)
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, scopes)
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s: %w", repo.RegistryStr(), err)
	}
	return t, nil
}

func cut(s string) (host, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
