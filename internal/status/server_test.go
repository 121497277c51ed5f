package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// memory is a Reader over a fixed set of revisions, paged in key order like state.Store;
// err, when set, is what every read fails with.
type memory struct {
	revs []*types.Revision
	err  error
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
	if len(out) > limit {
		last := out[limit-1]
		return out[:limit], state.Key(last.Pipeline, last.Revision), nil
	}
	return out, "", nil
}

// TestHandlerServesTheClient: what the daemon serves is what promoter status, dev and the
// end-to-end tests read, pages, token and errors included.
func TestHandlerServesTheClient(t *testing.T) {
	mem := &memory{}
	for i := range 2*PageSize + 1 { // three pages of the client's
		mem.revs = append(mem.revs, &types.Revision{Pipeline: "web", Revision: fmt.Sprintf("r%04d", i), Phase: types.PhaseMerged})
	}
	mem.revs = append(mem.revs, &types.Revision{Pipeline: "api", Revision: "a1", Phase: types.PhaseFailed, Reason: "<script>alert(1)</script>"})
	srv := httptest.NewServer(NewHandler(mem, "s3cret"))
	defer srv.Close()
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
	srv := httptest.NewServer(NewHandler(&memory{err: errors.New("nats: no responders")}, ""))
	defer srv.Close()
	for _, path := range []string{"/v1/revisions", "/v1/revisions/web/r1"} {
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
