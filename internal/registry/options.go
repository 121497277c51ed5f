package registry

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// UserAgent is sent with every registry request.
const UserAgent = "promoter"

// Client holds what every registry call needs. The zero value is usable: default keychain,
// HTTPS except for loopback and private addresses (go-containerregistry's rule), the
// default transport.
type Client struct {
	// Insecure hosts are spoken to over plain HTTP.
	Insecure []string
	// InsecureAll speaks plain HTTP to every host (the CLI's --insecure).
	InsecureAll bool
	// Keychain resolves credentials; nil means authn.DefaultKeychain (docker config).
	Keychain authn.Keychain
	// Transport is the base HTTP transport; nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Jobs bounds concurrent requests of one operation; 0 means go-containerregistry's default.
	Jobs int
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
	}
	if c.Transport != nil {
		opts = append(opts, remote.WithTransport(c.Transport))
	}
	if c.Jobs > 0 {
		opts = append(opts, remote.WithJobs(c.Jobs))
	}
	return opts
}

func cut(s string) (host, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
