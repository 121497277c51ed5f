package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultReuseTTL is how long a reusing Client keeps its authenticated transports before it
// resolves credentials again: short enough that rotated credentials (a refreshed ECR or GAR
// token in the docker config, a new pull secret) are picked up within minutes, long enough
// that a busy daemon pings and authenticates once per repository in that time, not once per
// request.
const DefaultReuseTTL = 5 * time.Minute

// Reusing returns c with a pool of authenticated transports shared by every copy of the
// returned Client. Without it, every go-containerregistry call resolves the keychain, pings
// the registry (for a plain HTTP host, an HTTPS probe first, then /v2/) and fetches a token
// before its one request; with it, that happens once per repository and scope per ttl
// (DefaultReuseTTL when ttl is 0). Set the other fields first: the pool is built from them.
func (c Client) Reusing(ttl time.Duration) Client {
	if ttl <= 0 {
		ttl = DefaultReuseTTL
	}
	c.pool = &pool{ttl: ttl}
	return c
}

// pool holds one go-containerregistry Puller (it keeps one authenticated transport per
// repository, and refreshes its bearer token on a 401 by itself) and the raw transports
// HTTPTransport hands out. A generation lives for ttl, or until a registry refuses one of
// its requests with 401 or 403 (credentials rotated, a token revoked, a password fixed);
// the next call after that starts a new one, so credentials are resolved again.
type pool struct {
	ttl time.Duration

	mu  sync.Mutex
	gen *generation
}

type generation struct {
	born   time.Time
	puller *remote.Puller
	// refused is set by the generation's transport when a registry refuses a request.
	refused atomic.Bool
	// base is the unauthenticated transport under everything the generation makes.
	base http.RoundTripper
	// noReferrers holds the hosts that answered a referrers API request with a refusal
	// (Referrers asks them for the fallback tag directly).
	noReferrers sync.Map

	mu         sync.Mutex
	transports map[string]*lazyTransport
}

// lazyTransport is one raw transport, authenticated by the first caller that needs it;
// concurrent callers wait for that one authentication instead of each doing their own.
type lazyTransport struct {
	once sync.Once
	rt   http.RoundTripper
	err  error
}

// current is the live generation, started anew once the last one is ttl old or was
// refused.
func (p *pool) current(c Client) *generation {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != nil && time.Since(p.gen.born) < p.ttl && !p.gen.refused.Load() {
		return p.gen
	}
	g := &generation{born: time.Now(), transports: map[string]*lazyTransport{}}
	g.base = &refusals{next: c.RoundTripper(), gen: g}
	// The Puller keeps these options (keychain, transport, user agent) for every transport
	// it makes; each call passes its own context. NewPuller fails only on a failing option,
	// and these cannot fail.
	g.puller, _ = remote.NewPuller(append(c.baseOptions(), remote.WithTransport(g.base))...)
	p.gen = g
	return g
}

// refusals marks its generation refused when a registry answers 401 or 403 to anything but
// a ping (a ping's 401 is the registry naming its auth scheme). A bearer token that merely
// expired is refused once too; the new generation costs one authentication. It also notes
// the hosts without the referrers API (Referrers).
type refusals struct {
	next http.RoundTripper
	gen  *generation
}

func (r *refusals) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && req.URL.Path != "/v2/" {
		r.gen.refused.Store(true)
	}
	if err == nil && noReferrersAPI(req, resp) {
		r.gen.noReferrers.Store(req.URL.Host, true)
	}
	return resp, err
}

// transport is g's raw transport for repo and scopes, made by mk on first use. A failed
// authentication is not kept: the next caller tries again.
func (g *generation) transport(repo name.Repository, scopes []string, mk func() (http.RoundTripper, error)) (http.RoundTripper, error) {
	key := repo.String() + " " + strings.Join(scopes, " ")
	g.mu.Lock()
	lt, ok := g.transports[key]
	if !ok {
		lt = &lazyTransport{}
		g.transports[key] = lt
	}
	g.mu.Unlock()
	lt.once.Do(func() { lt.rt, lt.err = mk() })
	if lt.err != nil {
		g.mu.Lock()
		if g.transports[key] == lt {
			delete(g.transports, key)
		}
		g.mu.Unlock()
	}
	return lt.rt, lt.err
}

// authenticate makes a raw transport for repo with scopes over base: credentials from the
// keychain, a ping, a token.
func (c Client) authenticate(ctx context.Context, base http.RoundTripper, repo name.Repository, scopes []string) (http.RoundTripper, error) {
	auth, err := authn.Resolve(ctx, c.keychain(), repo)
	if err != nil {
		return nil, fmt.Errorf("resolving credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt := transport.NewUserAgent(base, UserAgent)
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, scopes)
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s: %w", repo.RegistryStr(), err)
	}
	return t, nil
}
