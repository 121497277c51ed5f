// Package faultproxy is a reverse proxy that makes a real registry unreliable on purpose:
// it answers some requests with 500 (or another status), some with 429 and Retry-After,
// drops some connections without an answer (before or after the registry saw the request)
// and resets some in the middle of a body. Its faults can be changed while it runs, so a
// test can start and end a storm. Tests put it in front of a testenv registry to prove that
// retries and resumption work.
//
// It must stay a test tool: nothing in a production path imports it.
package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
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
	"time"
)

// Config sets the fault rates, each a probability per request in [0, 1]; their sum should
// not exceed 1. The zero Config forwards everything.
type Config struct {
	// Errors answers Status without forwarding.
	Errors float64
	// Status is the status of Errors (default 500).
	Status int
	// Throttles answers 429 with Retry-After: RetryAfter seconds without forwarding.
	Throttles float64
	// RetryAfter is the Retry-After of throttled requests in seconds (default 1).
	RetryAfter int
	// Drops closes the connection without an answer; half of the drops happen after the
	// registry handled the request, so the client cannot know whether it took effect.
	Drops float64
	// Resets breaks a transfer in the middle and resets the connection (TCP RST). A request
	// with a body (a blob or manifest upload) has half of its body read and forwarded to the
	// registry, which sees the upload break off; any other request is forwarded and the
	// client gets the headers and at most half of the response body (the reset discards
	// what the socket had not sent yet), or nothing when the response has no body to cut.
	Resets float64
	// Match, when set, limits the faults to the requests it accepts; the others are
	// forwarded untouched.
	Match func(*http.Request) bool
	// Seed makes the fault sequence reproducible (default 1). It is read by New only.
	Seed uint64
}

func (c Config) withDefaults() Config {
	if c.RetryAfter <= 0 {
		c.RetryAfter = 1
	}
	if c.Status == 0 {
		c.Status = http.StatusInternalServerError
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Stats counts what the proxy did.
type Stats struct {
	Requests, Errors, Throttles, Drops, Resets atomic.Int64
}

// Request is one request the proxy received and the fault it injected ("" when forwarded).
type Request struct {
	At     time.Time
	Method string
	Path   string
	Query  url.Values
	Fault  string
}

// The faults, as Request.Fault names them.
const (
	FaultError     = "error"
	FaultThrottle  = "throttle"
	FaultDrop      = "drop"
	FaultDropAfter = "drop-after"
	FaultReset     = "reset"
)

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	// Host is "127.0.0.1:PORT", usable in image references in place of the target's host.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL   string
	Stats Stats

	mu       sync.Mutex
	cfg      Config
	rand     *rand.Rand
	requests []Request
	proxy    *httputil.ReverseProxy
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
	cfg = cfg.withDefaults()
	rp := httputil.NewSingleHostReverseProxy(target)
	// Broken uploads are the point; do not log each one.
	rp.ErrorLog = log.New(io.Discard, "", 0)
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

// Set replaces the faults from the next request on (Seed is ignored: the sequence goes
// on). Set(Config{}) ends a storm.
func (p *Proxy) Set(cfg Config) {
	cfg = cfg.withDefaults()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = cfg
}

// Requests returns the requests received so far, in arrival order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// roll records r and picks its fault under the current configuration.
func (p *Proxy) roll(r *http.Request) (fault string, cfg Config) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg = p.cfg
	if cfg.Match == nil || cfg.Match(r) {
		x, edge := p.rand.Float64(), 0.0
		for _, f := range []struct {
			name string
			rate float64
		}{
			{FaultError, cfg.Errors}, {FaultThrottle, cfg.Throttles},
			{FaultDrop, cfg.Drops / 2}, {FaultDropAfter, cfg.Drops / 2}, {FaultReset, cfg.Resets},
		} {
			if edge += f.rate; x < edge {
				fault = f.name
				break
			}
		}
	}
	p.requests = append(p.requests, Request{At: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Fault: fault})
	return fault, cfg
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.Stats.Requests.Add(1)
	fault, cfg := p.roll(r)
	switch fault {
	case FaultError:
		p.Stats.Errors.Add(1)
		http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}`, cfg.Status)
	case FaultThrottle:
		p.Stats.Throttles.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(cfg.RetryAfter))
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected throttle"}]}`, http.StatusTooManyRequests)
	case FaultDrop:
		p.Stats.Drops.Add(1)
		drop(w)
	case FaultDropAfter:
		p.Stats.Drops.Add(1)
		p.proxy.ServeHTTP(httptest.NewRecorder(), r)
		drop(w)
	case FaultReset:
		p.Stats.Resets.Add(1)
		p.reset(w, r)
	default:
		p.proxy.ServeHTTP(w, r)
	}
}

// errCut ends the half body forwarded by reset.
var errCut = errors.New("faultproxy: connection reset mid-body")

// reset breaks r in the middle of its body, or of the response's, and resets the client
// connection.
func (p *Proxy) reset(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		half := int64(32 << 10)
		if r.ContentLength > 0 {
			half = max(r.ContentLength/2, 1)
		}
		head, _ := io.ReadAll(io.LimitReader(r.Body, half))
		up := r.Clone(r.Context())
		// The registry receives the first half, then the upstream connection breaks.
		up.Body = io.NopCloser(io.MultiReader(bytes.NewReader(head), errReader{errCut}))
		p.proxy.ServeHTTP(httptest.NewRecorder(), up)
		drop(w)
		return
	}
	rec := httptest.NewRecorder()
	p.proxy.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if r.Method == http.MethodHead || len(body) < 2 {
		drop(w) // no body to cut: the answer is lost as a whole
		return
	}
	conn, buf, ok := hijack(w)
	if !ok {
		return
	}
	res := rec.Result()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", res.StatusCode, http.StatusText(res.StatusCode))
	res.Header.Set("Content-Length", strconv.Itoa(len(body)))
	res.Header.Del("Transfer-Encoding")
	_ = res.Header.Write(buf)
	buf.WriteString("\r\n")
	buf.Write(body[:len(body)/2])
	_ = buf.Flush()
	rst(conn)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// drop closes the client connection without writing a response.
func drop(w http.ResponseWriter) {
	if conn, _, ok := hijack(w); ok {
		rst(conn)
	}
}

func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: response writer cannot hijack")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	return conn, buf, true
}

// rst closes conn with a TCP RST rather than a FIN: a connection reset, as on a real
// network.
func rst(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}
