package status

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// Reader is the revision state as the API serves it: *state.Store. Its errors other than
// state.ErrNotFound mean the state is unavailable for now (the bus is down, electing a
// leader, or not ready yet), and are answered 503 with Retry-After.
type Reader interface {
	Get(ctx context.Context, pipeline, revision string) (*types.Revision, error)
	Page(ctx context.Context, pipeline, after string, limit int) ([]*types.Revision, string, error)
}

// Page sizes of GET /v1/revisions.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// NewHandler serves the revision state read-only, for `promoter status` and operators, on
// the status listener (never the webhook one):
//
//	GET /v1/revisions[?pipeline=NAME][&limit=N][&after=CURSOR]  one Page, in key order
//	GET /v1/revisions/{pipeline}/{revision}                     one revision
//
// With a non-empty token (auth.statusToken), every request must carry it as a bearer
// token.
func NewHandler(st Reader, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/revisions", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := defaultPageLimit
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxPageLimit {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a number from 1 to " + strconv.Itoa(maxPageLimit)})
				return
			}
			limit = n
		}
		revs, next, err := st.Page(r.Context(), q.Get("pipeline"), q.Get("after"), limit)
		if err != nil {
			stateUnavailable(w, err)
			return
		}
		if revs == nil {
			revs = []*types.Revision{}
		}
		writeJSON(w, http.StatusOK, Page{Revisions: revs, Next: next})
	})
	mux.HandleFunc("GET /v1/revisions/{pipeline}/{revision}", func(w http.ResponseWriter, r *http.Request) {
		rev, err := st.Get(r.Context(), r.PathValue("pipeline"), r.PathValue("revision"))
		switch {
		case errors.Is(err, state.ErrNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no state for " + r.PathValue("pipeline") + "/" + r.PathValue("revision")})
		case err != nil:
			stateUnavailable(w, err)
		default:
			writeJSON(w, http.StatusOK, rev)
		}
	})
	if token == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="promoter status"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the status API needs the bearer token configured as auth.statusToken"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// stateUnavailable answers a failed read of the revision state: the bus is down or
// electing a leader, which a retry outlives.
func stateUnavailable(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "revision state unavailable, retry: " + err.Error()})
}
