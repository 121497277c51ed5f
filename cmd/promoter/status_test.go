package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/types"
)

// pagedStatus serves /v1/revisions the way the daemon does (our own API: a fake at our
// boundary), in pages of at most maxLimit, behind a bearer token, and records the limits
// it was asked for.
type pagedStatus struct {
	revs     []*types.Revision // in key order
	token    string
	maxLimit int
	mu       sync.Mutex
	asked    []int
}

func (p *pagedStatus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+p.token {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"error": "token please"})
		return
	}
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit < 1 || limit > p.maxLimit {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.asked = append(p.asked, limit)
	p.mu.Unlock()
	after := r.URL.Query().Get("after")
	i := sort.Search(len(p.revs), func(i int) bool { return p.revs[i].Pipeline+"."+p.revs[i].Revision > after })
	page := status.Page{Revisions: p.revs[i:min(i+limit, len(p.revs))]}
	if i+limit < len(p.revs) {
		last := page.Revisions[len(page.Revisions)-1]
		page.Next = last.Pipeline + "." + last.Revision
	}
	json.NewEncoder(w).Encode(page)
}

func TestStatusFollowsPages(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	srv := &pagedStatus{token: "t0k", maxLimit: 1000}
	for i := range 1203 {
		srv.revs = append(srv.revs, &types.Revision{Pipeline: "web", Revision: fmt.Sprintf("r%04d", i),
			Phase: types.PhaseWaiting, Updated: start.Add(time.Duration(i) * time.Second)})
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	for _, tc := range []struct {
		name    string
		args    []string
		want    int // revisions printed
		newest  string
		wantErr error // matched with errors.Is
	}{
		{name: "every page", args: []string{"--token", "t0k"}, want: 1203, newest: "r1202"},
		{name: "limit within a page", args: []string{"--token", "t0k", "--limit", "3"}, want: 3, newest: "r0002"},
		{name: "limit across pages", args: []string{"--token", "t0k", "--limit", "700"}, want: 700, newest: "r0699"},
		{name: "token from the environment", args: nil, want: 1203, newest: "r1202"},
		{name: "wrong token", args: []string{"--token", "nope"}, wantErr: status.ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.args == nil {
				t.Setenv("PROMOTER_AUTH_STATUSTOKEN", "t0k")
			}
			out, _, err := runCLI(t, append([]string{"status", "--server", ts.URL, "--json"}, tc.args...)...)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []*types.Revision
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || got[0].Revision != tc.newest {
				t.Errorf("got %d revisions, newest %s; want %d, newest %s", len(got), got[0].Revision, tc.want, tc.newest)
			}
		})
	}
	for _, n := range srv.asked {
		if n > status.PageSize {
			t.Errorf("asked for a page of %d, want at most %d", n, status.PageSize)
		}
	}
}
