package status

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// memory is a Reader over a fixed set of revisions, paged in key order like state.Store;
// err, when set, is what every read fails with. read counts the revisions its pages
// returned, and publish sends a revision to its watchers.
type memory struct {
	revs []*types.Revision
	err  error

	mu       sync.Mutex
	read     int
	watchers []chan *types.Revision
	watching chan struct{} // closed by the first Watch
}

func (m *memory) Watch(ctx context.Context, pipeline string) (<-chan *types.Revision, error) {
	if m.err != nil {
		return nil, m.err
	}
	ch := make(chan *types.Revision, 16)
	m.mu.Lock()
	m.watchers = append(m.watchers, ch)
	if m.watching != nil && len(m.watchers) == 1 {
		close(m.watching)
	}
	m.mu.Unlock()
	return ch, nil
}

func (m *memory) publish(r *types.Revision) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.watchers {
		ch <- r
	}
}

func (m *memory) Get(_ context.Context, pipeline, revision string) (*types.Revision, error) {
	if m.err != nil {
		return nil, m.err
	}
	for _, r := range m.revs {
		if r.Pipeline == pipeline && r.Revision == revision {
			return r, nil
		}
	}
	return nil, state.ErrNotFound
}

func (m *memory) Page(_ context.Context, pipeline, after string, limit int) ([]*types.Revision, string, error) {
	if m.err != nil {
		return nil, "", m.err
	}
	var out []*types.Revision
	for _, r := range m.revs {
		key := state.Key(r.Pipeline, r.Revision)
		if (pipeline == "" || r.Pipeline == pipeline) && key > after {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return state.Key(out[i].Pipeline, out[i].Revision) < state.Key(out[j].Pipeline, out[j].Revision)
	})
	next := ""
	if len(out) > limit {
		last := out[limit-1]
		out, next = out[:limit], state.Key(last.Pipeline, last.Revision)
	}
	m.mu.Lock()
	m.read += len(out)
	m.mu.Unlock()
	return out, next, nil
}

func newHandler(t *testing.T, st Reader, token string, opts ...Option) *httptest.Server {
	t.Helper()
	h, err := NewHandler(st, token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestHandlerServesTheClient: what the daemon serves is what promoter status, dev and the
// end-to-end tests read, pages, token and errors included.
func TestHandlerServesTheClient(t *testing.T) {
	mem := &memory{}
	for i := range 2*PageSize + 1 { // three pages of the client's
		mem.revs = append(mem.revs, &types.Revision{Pipeline: "web", Revision: fmt.Sprintf("r%04d", i), Phase: types.PhaseMerged})
	}
	mem.revs = append(mem.revs, &types.Revision{Pipeline: "api", Revision: "a1", Phase: types.PhaseFailed, Reason: "<script>alert(1)</script>"})
	srv := newHandler(t, mem, "s3cret")
	ctx := context.Background()
	c := &Client{URL: srv.URL, Token: "s3cret"}

	all, err := c.List(ctx, "", 0)
	if err != nil || len(all) != 2*PageSize+2 || all[0].Pipeline != "api" || all[len(all)-1].Revision != fmt.Sprintf("r%04d", 2*PageSize) {
		t.Fatalf("List: %d revisions, %v", len(all), err)
	}
	web, err := c.List(ctx, "web", 7)
	if err != nil || len(web) != 7 || web[6].Revision != "r0006" {
		t.Fatalf("List web: %d revisions, %v", len(web), err)
	}
	r, err := c.Revision(ctx, "api", "a1")
	if err != nil || r.Reason != "<script>alert(1)</script>" {
		t.Fatalf("Revision: %+v, %v", r, err)
	}
	if _, err := c.Revision(ctx, "api", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent revision: %v, want ErrNotFound", err)
	}

	for _, tc := range []struct {
		name, path, token string
		want              int
		header, body      string
	}{
		{"no token", "/v1/revisions", "", http.StatusUnauthorized, "WWW-Authenticate", "auth.statusToken"},
		{"wrong token", "/v1/revisions/web/r1", "guess", http.StatusUnauthorized, "WWW-Authenticate", "auth.statusToken"},
		{"limit not a number", "/v1/revisions?limit=ten", "s3cret", http.StatusBadRequest, "", "limit must be a number from 1 to 1000"},
		{"limit too large", "/v1/revisions?limit=1001", "s3cret", http.StatusBadRequest, "", "limit must be"},
		{"a write", "/v1/revisions/web/r1", "s3cret", http.StatusMethodNotAllowed, "", ""},
		{"pipelines without a token", "/v1/pipelines", "", http.StatusUnauthorized, "WWW-Authenticate", "auth.statusToken"},
		{"watch without a token", "/v1/watch", "", http.StatusUnauthorized, "WWW-Authenticate", "auth.statusToken"},
		{"an unknown API path without a token", "/v1/secrets", "", http.StatusUnauthorized, "", ""},
		{"phase unknown", "/v1/revisions?phase=done", "s3cret", http.StatusBadRequest, "", "phase must be one of building, waiting"},
		{"the page without a token", "/", "", http.StatusOK, "Content-Security-Policy", "<title>promoter status</title>"},
		{"the page's script without a token", "/ui/app.js", "", http.StatusOK, "Content-Security-Policy", "textContent"},
		{"not the page", "/index.html", "", http.StatusNotFound, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodGet
			if tc.name == "a write" {
				method = http.MethodDelete
			}
			req, _ := http.NewRequestWithContext(ctx, method, srv.URL+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || (tc.header != "" && resp.Header.Get(tc.header) == "") || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%s %s: %s %v %s", method, tc.path, resp.Status, resp.Header, body)
			}
		})
	}
}

// TestHandlerStateUnavailable: a state read that fails (bus down, not ready yet) is a 503
// the client is told to retry, on both endpoints.
func TestHandlerStateUnavailable(t *testing.T) {
	srv := newHandler(t, &memory{err: errors.New("nats: no responders")}, "")
	for _, path := range []string{"/v1/revisions", "/v1/revisions/web/r1", "/v1/watch"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "no responders") {
			t.Errorf("GET %s: %s Retry-After=%q %s", path, resp.Status, resp.Header.Get("Retry-After"), body)
		}
	}
}

// TestPagesOf10000: a page of 10,000 revisions reads that page's revisions only, and a
// phase filter finds the few failed ones over several requests, none of which reads more
// than maxPhaseScan revisions.
func TestPagesOf10000(t *testing.T) {
	mem := &memory{}
	failed := map[string]bool{}
	for i := range 10000 {
		r := &types.Revision{Pipeline: "web", Revision: fmt.Sprintf("r%05d", i), Phase: types.PhasePromoted}
		if i%1500 == 7 {
			r.Phase = types.PhaseFailed
			failed[r.Revision] = true
		}
		mem.revs = append(mem.revs, r)
	}
	srv := newHandler(t, mem, "")
	get := func(query string) Page {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v1/revisions?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p Page
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&p) != nil {
			t.Fatalf("GET %s: %s", query, resp.Status)
		}
		return p
	}
	p := get("limit=50")
	if len(p.Revisions) != 50 || p.Next != "web.r00049" || mem.read != 50 {
		t.Fatalf("first page: %d revisions, next %q, %d read; want 50, web.r00049, 50", len(p.Revisions), p.Next, mem.read)
	}
	found := map[string]bool{}
	after, requests := "", 0
	for {
		mem.read = 0
		p := get("limit=50&phase=failed&after=" + after)
		requests++
		if mem.read > maxPhaseScan {
			t.Fatalf("request %d read %d revisions, want at most %d", requests, mem.read, maxPhaseScan)
		}
		for _, r := range p.Revisions {
			if r.Phase != types.PhaseFailed {
				t.Fatalf("phase filter returned %s in %s", r.Revision, r.Phase)
			}
			found[r.Revision] = true
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if diff := cmp.Diff(failed, found); diff != "" || requests < 10000/maxPhaseScan {
		t.Errorf("failed revisions over %d requests (-want +got):\n%s", requests, diff)
	}
	// A full page of matches ends where its last match is; a scan that reached its bound
	// ends where it stopped, with nothing found if need be.
	p = get("limit=1&phase=failed")
	if len(p.Revisions) != 1 || p.Next != "web.r00007" {
		t.Errorf("one failed: %d, next %q; want 1, web.r00007", len(p.Revisions), p.Next)
	}
	p = get("limit=5&phase=failed&after=web.r00007")
	if len(p.Revisions) != 0 || p.Next != "web.r01007" {
		t.Errorf("failed after r00007: %d, next %q; want 0, web.r01007", len(p.Revisions), p.Next)
	}
}

// TestWatch: /v1/watch says ready once the watch is open, then streams each revision
// written as one server-sent event, its untrusted strings as JSON (the page renders them
// as text).
func TestWatch(t *testing.T) {
	mem := &memory{watching: make(chan struct{})}
	h, err := NewHandler(mem, "tok", WithKeepAlive(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/watch", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	<-mem.watching
	// Once the stream is idle (its first keep-alive), a revision is written.
	sc := bufio.NewScanner(resp.Body)
	var events []string
	published := false
	for len(events) < 4 && sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, ": keep-alive") && !published:
			published = true
			mem.publish(&types.Revision{Pipeline: "web", Revision: "r1", Phase: types.PhaseFailed, Reason: "<script>window.pwned=1</script>"})
		case strings.HasPrefix(line, "event: "), strings.HasPrefix(line, "data: "):
			events = append(events, line)
		}
	}
	want := []string{"event: ready", "data: {}", "event: revision",
		`data: {"pipeline":"web","revision":"r1","phase":"failed","reason":"\u003cscript\u003ewindow.pwned=1\u003c/script\u003e","platforms":null,"updated":"0001-01-01T00:00:00Z"}`}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// Close (the server's shutdown starting) ends the stream.
	h.Close()
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, ":") {
			t.Errorf("after Close: %q", line)
		}
	}
}

// TestPageBuildsNoHTMLFromData: the page's script never parses a string as HTML, so a
// repository name, ref or failure message cannot become markup (the browser test in e2e
// proves a <script> reason renders as text).
func TestPageBuildsNoHTMLFromData(t *testing.T) {
	js, err := ui.ReadFile("ui/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style"} {
		if strings.Contains(string(js), sink) {
			t.Errorf("ui/app.js uses %s", sink)
		}
	}
}
