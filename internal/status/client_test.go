package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/types"
)

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "the status API needs the bearer token"})
			return
		}
		switch r.URL.Path {
		case "/v1/revisions/web/abc":
			_ = json.NewEncoder(w).Encode(types.Revision{Pipeline: "web", Revision: "abc", Phase: types.PhaseMerged})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "no state for web/nope"})
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := &Client{URL: srv.URL + "/", Token: "s3cret"}
	if r, err := c.Revision(ctx, "web", "abc"); err != nil || r.Phase != types.PhaseMerged {
		t.Fatalf("Revision: %+v %v", r, err)
	}
	if _, err := c.Revision(ctx, "web", "nope"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no state for web/nope") {
		t.Errorf("absent revision: got %v, want ErrNotFound with the daemon's message", err)
	}
	c.Token = ""
	if _, err := c.Revision(ctx, "web", "abc"); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the token: got %v, want ErrUnauthorized with the daemon's 401", err)
	}
	c.URL = "http://127.0.0.1:1"
	if _, err := c.Revision(ctx, "web", "abc"); err == nil || !strings.Contains(err.Error(), "is `promoter serve` running?") {
		t.Errorf("no daemon: got %v, want a hint", err)
	}
}
