package registry_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// counter counts the requests that go through it: pings (GET /v2/) and all.
type counter struct {
	mu           sync.Mutex
	pings, total int
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.total++
	if r.URL.Path == "/v2/" {
		c.pings++
	}
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counter) counts() (pings, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pings, c.total
}

// TestReusingAuthenticatesOncePerRepository reads and writes one repository of a registry
// that wants basic auth, ten times each, and counts the pings (two per authentication to a
// plain HTTP host: go-containerregistry probes HTTPS first): a reusing client authenticates
// once for reads and once for writes, a plain one before every operation, and one whose
// pool expires at once behaves like a plain one (credentials are resolved again).
func TestReusingAuthenticatesOncePerRepository(t *testing.T) {
	reg := testenv.StartRegistry(t, localregistry.WithBasicAuth("ci", "s3cret"))
	keychain := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "ci", Password: "s3cret"})}
	const n = 10
	tests := []struct {
		name      string
		client    func(registry.Client) registry.Client
		wantPings int
	}{
		{"plain", func(c registry.Client) registry.Client { return c }, 2 * 2 * n},
		{"reusing", func(c registry.Client) registry.Client { return c.Reusing(0) }, 2 * 2},
		{"reusing, expired at once", func(c registry.Client) registry.Client { return c.Reusing(time.Nanosecond) }, 2 * 2 * n},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cnt := &counter{}
			c := tt.client(registry.Client{Insecure: []string{reg.Host}, Keychain: keychain, Transport: cnt})
			ctx := context.Background()
			repo, err := c.ParseRepository(reg.Host + "/pool/app" + string(rune('a'+i)))
			if err != nil {
				t.Fatal(err)
			}
			img, err := random.Image(64, 1)
			if err != nil {
				t.Fatal(err)
			}
			// The blobs go up first, uncounted: the loop writes manifests only.
			if err := remote.Write(repo.Tag("base"), img, registry.Client{Insecure: []string{reg.Host}, Keychain: keychain}.Remote(ctx)...); err != nil {
				t.Fatal(err)
			}
			for range n {
				if _, err := remote.Head(repo.Tag("base"), c.Remote(ctx)...); err != nil {
					t.Fatalf("HEAD: %v", err)
				}
				opts, err := c.Writing(ctx, repo)
				if err != nil {
					t.Fatalf("Writing: %v", err)
				}
				if err := remote.Put(repo.Tag("copy"), img, opts...); err != nil {
					t.Fatalf("PUT: %v", err)
				}
			}
			pings, total := cnt.counts()
			if pings != tt.wantPings {
				t.Errorf("got %d pings in %d requests for %d HEADs and %d PUTs, want %d", pings, total, n, n, tt.wantPings)
			}
		})
	}
}

// TestReusingRefusesWrongCredentials checks that a failed authentication is not kept: the
// error reaches the caller, and the next call tries again (and succeeds once the
// credentials are right).
func TestReusingRefusesWrongCredentials(t *testing.T) {
	reg := testenv.StartRegistry(t, localregistry.WithBasicAuth("ci", "s3cret"))
	kc := &switchKeychain{auth: authn.FromConfig(authn.AuthConfig{Username: "ci", Password: "wrong"})}
	c := registry.Client{Insecure: []string{reg.Host}, Keychain: kc, Retry: &registry.RetryPolicy{MaxAttempts: 1}}.Reusing(0)
	ctx := context.Background()
	repo, err := c.ParseRepository(reg.Host + "/pool/denied")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.Writing(ctx, repo)
	if err == nil {
		err = remote.Write(repo.Tag("x"), img, opts...)
	}
	if err == nil {
		t.Fatal("writing with a wrong password: got no error")
	}
	kc.set(authn.FromConfig(authn.AuthConfig{Username: "ci", Password: "s3cret"}))
	opts, err = c.Writing(ctx, repo)
	if err != nil {
		t.Fatalf("Writing after fixing the password: %v", err)
	}
	if err := remote.Write(repo.Tag("x"), img, opts...); err != nil {
		t.Fatalf("writing after fixing the password: %v", err)
	}
}

type staticKeychain struct{ auth authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

type switchKeychain struct {
	mu   sync.Mutex
	auth authn.Authenticator
}

func (k *switchKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.auth, nil
}

func (k *switchKeychain) set(a authn.Authenticator) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.auth = a
}
