// Package faultproxy is a reverse proxy that makes a real registry unreliable on purpose:
// it answers some requests with 500, some with 429 and Retry-After, and drops some
// connections without an answer (before or after the registry saw the request). Tests put
// it in front of a testenv registry to prove that retries and resumption work.
//
// It must stay a test tool: nothing in a production path imports it.
package faultproxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Config sets the fault rates, each a probability per request in [0, 1].
type Config struct {
	// Errors answers 500 without forwarding.
	Errors float64
	// Throttles answers 429 with Retry-After: RetryAfter seconds without forwarding.
	Throttles float64
	// RetryAfter is the Retry-After of throttled requests in seconds (default 1).
	RetryAfter int
	// Drops closes the connection without an answer; half of the drops happen after the
	// registry handled the request, so the client cannot know whether it took effect.
	Drops float64
	// Seed makes the fault sequence reproducible (default 1).
	Seed uint64
}

// Stats counts what the proxy did.
type Stats struct {
	Requests, Errors, Throttles, Drops atomic.Int64
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	// Host is "127.0.0.1:PORT", usable in image references in place of the target's host.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL   string
	Stats Stats

	cfg   Config
	mu    sync.Mutex
	rand  *rand.Rand
	proxy *httputil.ReverseProxy
}

// Start serves a proxy to target (for example "http://127.0.0.1:5000") on a loopback port
// until the test ends.
func Start(t testing.TB, target string, cfg Config) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("faultproxy target %q: %v", target, err)
	}
	p := New(u, cfg)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.Host = srv.Listener.Addr().String()
	return p
}

// New returns the proxy handler for target; Start is the usual entry point.
func New(target *url.URL, cfg Config) *Proxy {
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 1
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// Upload Location headers name the registry's own host; rewrite them to come back
	// through the proxy so that every step of an upload can fail.
	rp.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			if lu, err := url.Parse(loc); err == nil && lu.Host == target.Host {
				lu.Scheme, lu.Host = "", ""
				resp.Header.Set("Location", lu.String())
			}
		}
		return nil
	}
	return &Proxy{cfg: cfg, rand: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), proxy: rp}
}

func (p *Proxy) roll() (fault string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	x := p.rand.Float64()
	switch {
	case x < p.cfg.Errors:
		return "error"
	case x < p.cfg.Errors+p.cfg.Throttles:
		return "throttle"
	case x < p.cfg.Errors+p.cfg.Throttles+p.cfg.Drops/2:
		return "drop"
	case x < p.cfg.Errors+p.cfg.Throttles+p.cfg.Drops:
		return "drop-after"
	}
	return ""
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.Stats.Requests.Add(1)
	switch p.roll() {
	case "error":
		p.Stats.Errors.Add(1)
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}`, http.StatusInternalServerError)
	case "throttle":
		p.Stats.Throttles.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(p.cfg.RetryAfter))
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected throttle"}]}`, http.StatusTooManyRequests)
	case "drop":
		p.Stats.Drops.Add(1)
		drop(w)
	case "drop-after":
		p.Stats.Drops.Add(1)
		rec := httptest.NewRecorder()
		p.proxy.ServeHTTP(rec, r)
		drop(w)
	default:
		p.proxy.ServeHTTP(w, r)
	}
}

// drop closes the client connection without writing a response.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: response writer cannot hijack")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN: a connection reset, as on a real network
	}
	conn.Close()
}
