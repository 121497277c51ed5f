package listen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/testenv"
)

func TestAutoMaxConns(t *testing.T) {
	for _, tt := range []struct {
		name   string
		nofile uint64
		want   int
	}{
		{"unknown limit", 0, 1024},
		{"tiny limit keeps a floor", 10, 16},
		{"half of a low limit", 600, 300},
		{"half of 1024", 1024, 512},
		{"capped on a high limit", 1 << 20, 1024},
		{"unlimited", ^uint64(0), 1024},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := autoMaxConns(tt.nofile); got != tt.want {
				t.Errorf("autoMaxConns(%d) = %d, want %d", tt.nofile, got, tt.want)
			}
		})
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      Limits
		want    Limits
		wantErr error
	}{
		{name: "zero is every default", want: Limits{
			ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout, WriteTimeout: DefaultWriteTimeout,
			IdleTimeout: DefaultIdleTimeout, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxBodyBytes: DefaultMaxBodyBytes, MaxInFlight: DefaultMaxInFlight,
		}},
		{name: "header timeout never exceeds the request timeout", in: Limits{ReadTimeout: time.Second}, want: Limits{
			ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: DefaultWriteTimeout,
			IdleTimeout: DefaultIdleTimeout, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxBodyBytes: DefaultMaxBodyBytes, MaxInFlight: DefaultMaxInFlight,
		}},
		{name: "negative timeout", in: Limits{IdleTimeout: -time.Second}, wantErr: ErrNegativeLimit},
		{name: "negative cap", in: Limits{MaxInFlight: -1}, wantErr: ErrNegativeLimit},
		{name: "negative share of a client", in: Limits{MaxConnsPerClient: -1}, wantErr: ErrNegativeLimit},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// testServer serves h on a loopback port and returns its address.
func testServer(t *testing.T, h http.Handler, opts ...Option) (*Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New("test", lis, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, s.Addr()
}

// dial opens a raw connection and writes what is given.
func dial(t *testing.T, addr, send string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// response reads one response from c.
func response(t *testing.T, c net.Conn) *http.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func post(body string) string {
	return "POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// slowPost sends the headers of a 1000-byte body and only its first bytes.
const slowPost = "POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{"

// waitOpen waits until the budget holds n connections (accept is asynchronous).
func waitOpen(t *testing.T, cs *Conns, n int) {
	t.Helper()
	err := testenv.WaitFor(10*time.Second, func() error {
		if open := cs.Open(); open != n {
			return fmt.Errorf("%d connections open, want %d", open, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// blocking is a handler that signals when it runs and waits to be released.
type blocking struct {
	entered chan string
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{entered: make(chan string, 16), release: make(chan struct{})}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.entered <- string(body)
	<-b.release
	io.WriteString(w, "done:"+string(body))
}

// TestInFlightCountsOnlyWork: a client trickling its body takes no in-flight slot, so a
// ready request is worked on; past the cap the answer is 503 with Retry-After, except for
// probes.
func TestInFlightCountsOnlyWork(t *testing.T) {
	h := newBlocking()
	mux := http.NewServeMux()
	mux.Handle("POST /work", h)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ready") })
	m := metrics.New(prometheus.NewRegistry())
	_, addr := testServer(t, mux, WithLimits(Limits{MaxInFlight: 1}), WithProbes("/readyz"), WithMetrics(m))

	dial(t, addr, slowPost) // holds its connection, but no slot
	ready := dial(t, addr, post("honest"))
	if got := <-h.entered; got != "honest" {
		t.Fatalf("handler got %q, want the honest body", got)
	}
	// The slot is taken by work now: the next ready request is turned away at once.
	over := dial(t, addr, post("second"))
	resp := response(t, over)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the cap: got %s Retry-After %q, want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	probe := dial(t, addr, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
	if resp := response(t, probe); resp.StatusCode != http.StatusOK {
		t.Errorf("probe past the cap: got %s, want 200", resp.Status)
	}
	close(h.release)
	if resp := response(t, ready); resp.StatusCode != http.StatusOK {
		t.Errorf("honest request: got %s, want 200", resp.Status)
	}
	if got := testutil.ToFloat64(m.HTTPRejected.WithLabelValues("test", "in_flight")); got != 1 {
		t.Errorf("rejected in_flight = %v, want 1", got)
	}
}

// TestSlowBodyIsCutOff: a body slower than the read timeout gets 408 and its connection
// is closed.
func TestSlowBodyIsCutOff(t *testing.T) {
	h := newBlocking()
	close(h.release)
	_, addr := testServer(t, h, WithLimits(Limits{ReadTimeout: 200 * time.Millisecond}))
	c := dial(t, addr, slowPost)
	resp := response(t, c)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("got %s, want 408", resp.Status)
	}
	select {
	case b := <-h.entered:
		t.Errorf("the handler ran with %q", b)
	default:
	}
}

// TestBudgetShedsTheSlowestReader: past the connection budget, a new connection closes
// the one that has been reading its request body the longest, and is served.
func TestBudgetShedsTheSlowestReader(t *testing.T) {
	h := newBlocking()
	close(h.release)
	m := metrics.New(prometheus.NewRegistry())
	cs := NewConns(2, nil, m)
	_, addr := testServer(t, h, WithConns(cs), WithMetrics(m), WithLimits(Limits{MaxConnsPerClient: 2}))

	oldest := dial(t, addr, slowPost)
	waitActive(t, cs, 1)
	dial(t, addr, slowPost)
	waitActive(t, cs, 2)
	honest := dial(t, addr, post("honest"))
	if resp := response(t, honest); resp.StatusCode != http.StatusOK {
		t.Errorf("honest request past the budget: got %s, want 200", resp.Status)
	}
	_ = oldest.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := oldest.Read(make([]byte, 1)); err == nil || errors.Is(err, net.ErrClosed) {
		t.Errorf("oldest slow reader: read %d bytes, %v; want the server to have closed it", n, err)
	}
	if got := testutil.ToFloat64(m.HTTPConnectionsShed.WithLabelValues("test", shedSlowBody)); got != 1 {
		t.Errorf("shed slow_body = %v, want 1", got)
	}
}

// waitActive waits until n connections of the budget have had their headers read.
func waitActive(t *testing.T, cs *Conns, n int) {
	t.Helper()
	err := testenv.WaitFor(10*time.Second, func() error {
		cs.mu.Lock()
		active := 0
		for c := range cs.open {
			if c.state == http.StateActive {
				active++
			}
		}
		cs.mu.Unlock()
		if active != n {
			return fmt.Errorf("%d connections active, want %d", active, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBudgetShedsSlowBodiesFirst: a connection whose headers are not read yet may just not
// have been scheduled, so a slow body goes before it even when it is younger.
func TestBudgetShedsSlowBodiesFirst(t *testing.T) {
	h := newBlocking()
	close(h.release)
	cs := NewConns(2, nil, nil)
	_, addr := testServer(t, h, WithConns(cs), WithLimits(Limits{MaxConnsPerClient: 2}))

	head := dial(t, addr, "POST /work HTTP/1.1\r\nHost: t\r\n")
	waitOpen(t, cs, 1)
	body := dial(t, addr, slowPost)
	waitActive(t, cs, 1)
	if resp := response(t, dial(t, addr, post("honest"))); resp.StatusCode != http.StatusOK {
		t.Errorf("honest request: got %s, want 200", resp.Status)
	}
	_ = body.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := body.Read(make([]byte, 1)); err == nil {
		t.Error("the slow body was answered, want it closed")
	}
	// The slow headers are still being waited for: they get their own timeout's answer.
	if _, err := io.WriteString(head, "Content-Length: 2\r\n\r\nok"); err != nil {
		t.Fatalf("slow headers connection was closed: %v", err)
	}
	if resp := response(t, head); resp.StatusCode != http.StatusOK {
		t.Errorf("slow headers, finished: got %s, want 200", resp.Status)
	}
}

// TestBudgetRefusesWhenEveryConnectionWorks: when no connection can be shed, a new one is
// answered 503 with Retry-After and closed, instead of waiting or exhausting descriptors.
func TestBudgetRefusesWhenEveryConnectionWorks(t *testing.T) {
	h := newBlocking()
	defer close(h.release)
	cs := NewConns(1, nil, nil)
	_, addr := testServer(t, h, WithConns(cs), WithLimits(Limits{MaxConnsPerClient: 1}))
	dial(t, addr, post("working"))
	<-h.entered
	c := dial(t, addr, post("late"))
	resp := response(t, c)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("got %s Retry-After %q, want 503 with Retry-After 1", resp.Status, resp.Header.Get("Retry-After"))
	}
}

// TestBodyLimits: the handler's own body limit still answers 413 past the buffered part,
// and oversized headers get 431.
func TestBodyLimits(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /work", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, string(b))
	})
	_, addr := testServer(t, mux, WithLimits(Limits{MaxBodyBytes: 10, MaxHeaderBytes: 1024}))
	for _, tt := range []struct {
		name string
		send string
		want int
	}{
		{"body within the limit", post("0123456789"), http.StatusOK},
		{"body past the limit", post(strings.Repeat("x", 5000)), http.StatusRequestEntityTooLarge},
		{"headers past the limit", "GET /work HTTP/1.1\r\nHost: t\r\nX-Big: " + strings.Repeat("h", 8192) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if resp := response(t, dial(t, addr, tt.send)); resp.StatusCode != tt.want {
				t.Errorf("got %s, want %d", resp.Status, tt.want)
			}
		})
	}
}
