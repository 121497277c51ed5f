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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// memory is a Reader over a fixed set of revisions: Get finds one, Page returns them all
// in one page and records the query it was asked (the paging itself is state.Store's,
// tested there and through the client below); err, when set, is what every read fails
// with, and publish sends a revision to its watchers.
type memory struct {
	revs []*types.Revision
	err  error

	mu       sync.Mutex
	queries  []state.Query
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

func (m *memory) Page(_ context.Context, q state.Query) ([]*types.Revision, string, error) {
	if m.err != nil {
		return nil, "", m.err
	}
	if q.Order == state.ByRecent && strings.Contains(q.After, ".") {
		return nil, "", fmt.Errorf("after %q is %w", q.After, state.ErrBadCursor)
	}
	m.mu.Lock()
	m.queries = append(m.queries, q)
	m.mu.Unlock()
	return m.revs, "", nil
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
	st := state.New(bustest.Revisions(t))
	ctx := context.Background()
	set := func(pipeline, revision string, phase types.Phase, reason string) {
		t.Helper()
		if _, err := st.Update(ctx, pipeline, revision, func(r *types.Revision) error { r.Phase, r.Reason = phase, reason; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2*PageSize + 1 { // three pages of the client's
		set("web", fmt.Sprintf("r%04d", i), types.PhaseMerged, "")
	}
	set("api", "a1", types.PhaseFailed, "<script>alert(1)</script>")
	srv := newHandler(t, st, "s3cret")
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
		{"order unknown", "/v1/revisions?order=oldest", "s3cret", http.StatusBadRequest, "", "order must be key (the default) or recent"},
		{"a key as a recent cursor", "/v1/revisions?order=recent&after=web.r0001", "s3cret", http.StatusBadRequest, "", "after must be the next of a page of the same order"},
		{"recent first", "/v1/revisions?order=recent&limit=1", "s3cret", http.StatusOK, "", `"revision": "a1"`},
		{"the page without a token", "/", "", http.StatusOK, "Content-Security-Policy", "<title>promoter status</title>"},
		{"the page's script without a token", "/ui/app.js", "", http.StatusOK, "Content-Security-Policy", "textContent"},
		{"not the page", "/index.html", "", http.StatusNotFound, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodGet
			if tc.name == "a write" {
				method = http.MethodDelete
			}
			auth := ""
			if tc.token != "" {
				auth = "Bearer " + tc.token
			}
			resp, body := request(t, method, srv.URL+tc.path, auth)
			if resp.StatusCode != tc.want || (tc.header != "" && resp.Header.Get(tc.header) == "") || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%s %s: %s %v %s", method, tc.path, resp.Status, resp.Header, body)
			}
		})
	}
}

// TestStatusAPIRoundTripsEvidence: each platform's evidence, as the merge records it, reaches the
// client unchanged through one revision and a page, under the wire names the page reads.
func TestStatusAPIRoundTripsEvidence(t *testing.T) {
	st := state.New(bustest.Revisions(t))
	ctx := context.Background()
	const (
		amd64 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		arm64 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		s390x = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	)
	platforms := map[string]types.PlatformState{
		"linux/amd64": {Tag: "abc-amd64", Digest: amd64, Build: types.BuildSucceeded, BuildDigest: amd64, Job: "build-web-abc-linux-amd64-1-1a2b3c4d",
			Evidence: &types.Evidence{Kind: types.EvidenceBuild, Digest: amd64, Job: "build-web-abc-linux-amd64-1-1a2b3c4d"}},
		"linux/arm64": {Tag: "abc-arm64", Digest: arm64,
			Evidence: &types.Evidence{Kind: types.EvidenceSignature, Digest: arm64,
				Signer: "https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com",
				Detail: "attestation https://slsa.dev/provenance/v1 verified"}},
		"linux/s390x": {Tag: "abc-s390x", Digest: s390x,
			Evidence: &types.Evidence{Kind: types.EvidenceUnverified, Digest: s390x, Detail: "<b>verify.acceptUnverified</b>"}},
	}
	want, err := st.Update(ctx, "web", "abc", func(r *types.Revision) error {
		r.Phase, r.Index, r.Platforms = types.PhaseMerged, "sha256:5555555555555555555555555555555555555555555555555555555555555555", platforms
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := newHandler(t, st, "")
	c := &Client{URL: srv.URL}

	got, err := c.Revision(ctx, "web", "abc")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(platforms, got.Platforms); diff != "" {
		t.Errorf("GET /v1/revisions/web/abc platforms (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /v1/revisions/web/abc (-want +got):\n%s", diff)
	}
	page, err := c.List(ctx, "web", 0)
	if err != nil || len(page) != 1 {
		t.Fatalf("List: %d revisions, %v", len(page), err)
	}
	if diff := cmp.Diff(platforms, page[0].Platforms); diff != "" {
		t.Errorf("GET /v1/revisions platforms (-want +got):\n%s", diff)
	}

	// The names app.js reads.
	resp, err := http.Get(srv.URL + "/v1/revisions/web/abc")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var wire struct {
		Platforms map[string]struct {
			BuildDigest string         `json:"buildDigest"`
			Evidence    map[string]any `json:"evidence"`
		} `json:"platforms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&wire); err != nil {
		t.Fatal(err)
	}
	wantWire := map[string]map[string]any{
		"linux/amd64": {"kind": "build", "digest": amd64, "job": "build-web-abc-linux-amd64-1-1a2b3c4d"},
		"linux/arm64": {"kind": "signature", "digest": arm64,
			"signer": "https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main from https://token.actions.githubusercontent.com",
			"detail": "attestation https://slsa.dev/provenance/v1 verified"},
		"linux/s390x": {"kind": "unverified", "digest": s390x, "detail": "<b>verify.acceptUnverified</b>"},
	}
	for k, w := range wantWire {
		if diff := cmp.Diff(w, wire.Platforms[k].Evidence); diff != "" {
			t.Errorf("%s evidence on the wire (-want +got):\n%s", k, diff)
		}
	}
	if got := wire.Platforms["linux/amd64"].BuildDigest; got != amd64 {
		t.Errorf("linux/amd64 buildDigest on the wire: got %q, want %q", got, amd64)
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

// TestHandlerQueries: the query string becomes the state query, each read bounded.
func TestHandlerQueries(t *testing.T) {
	mem := &memory{}
	srv := newHandler(t, mem, "")
	for _, path := range []string{
		"/v1/revisions",
		"/v1/revisions?pipeline=web&phase=failed&order=recent&limit=7&after=42",
		"/v1/revisions?order=key&after=web.r1",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var p Page
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&p) != nil || p.Revisions == nil {
			t.Errorf("GET %s: %s %+v", path, resp.Status, p)
		}
		resp.Body.Close()
	}
	want := []state.Query{
		{Limit: defaultPageLimit, MaxRead: maxPhaseScan},
		{Pipeline: "web", Phase: types.PhaseFailed, Order: state.ByRecent, Limit: 7, After: "42", MaxRead: maxPhaseScan},
		{Order: state.ByKey, After: "web.r1", Limit: defaultPageLimit, MaxRead: maxPhaseScan},
	}
	if diff := cmp.Diff(want, mem.queries); diff != "" {
		t.Errorf("queries (-want +got):\n%s", diff)
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

// TestStatusAPIChecksTheBearerToken: the status API takes its token as the webhook
// receivers do (bearer.Check): the scheme in any case, and a token of another length
// refused like any other wrong one.
func TestStatusAPIChecksTheBearerToken(t *testing.T) {
	srv := newHandler(t, nil, "s3cret") // /v1/pipelines reads no state
	for _, tc := range []struct {
		name, auth string // auth is the Authorization header; "" sends none
		want       int
	}{
		{"Bearer", "Bearer s3cret", http.StatusOK},
		{"bearer in lower case", "bearer s3cret", http.StatusOK},
		{"BEARER in upper case", "BEARER s3cret", http.StatusOK},
		{"a shorter token", "Bearer s3cre", http.StatusUnauthorized},
		{"a longer token", "Bearer s3cret0", http.StatusUnauthorized},
		{"the token without a scheme", "s3cret", http.StatusUnauthorized},
		{"Basic credentials", "Basic czNjcmV0", http.StatusUnauthorized},
		{"no header", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := request(t, http.MethodGet, srv.URL+"/v1/pipelines", tc.auth)
			if resp.StatusCode != tc.want {
				t.Errorf("Authorization %q: got %s %s, want %d", tc.auth, resp.Status, body, tc.want)
			}
			if tc.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("Authorization %q: a 401 without WWW-Authenticate", tc.auth)
			}
		})
	}
}

// request sends method url with the Authorization header auth (none when empty) and
// returns the response with its body read.
func request(t *testing.T, method, url, auth string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
