package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/promoter-dev/promoter/internal/bearer"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// Reader is the revision state as the API serves it: *state.Store. Its errors other than
// state.ErrNotFound mean the state is unavailable for now (the bus is down, electing a
// leader, or not ready yet), and are answered 503 with Retry-After.
type Reader interface {
	Get(ctx context.Context, pipeline, revision string) (*types.Revision, error)
	// Page lists one page of revisions (see state.Query); state.ErrBadCursor for an after
	// no page of that order returned.
	Page(ctx context.Context, q state.Query) ([]*types.Revision, string, error)
	// Watch sends each revision written from now on (see state.Store.Watch).
	Watch(ctx context.Context, pipeline string) (<-chan *types.Revision, error)
}

// PipelineInfo is one configured pipeline, as GET /v1/pipelines lists it.
type PipelineInfo struct {
	Name         string   `json:"name"`
	Staging      string   `json:"staging"`
	Platforms    []string `json:"platforms"`
	Sign         bool     `json:"sign"`
	Destinations []string `json:"destinations"`
}

// Page sizes of GET /v1/revisions, and how many revisions one request with a phase filter
// reads at most before it answers with what it found and a cursor to go on from
// (state.Query.MaxRead).
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
	maxPhaseScan     = 1000
)

// NewHandler serves the revision state read-only, for `promoter status`, the status page
// and operators, on the status listener (never the webhook one):
//
//	GET /                                                      the status page (page.go)
//	GET /v1/pipelines                                          the configured pipelines
//	GET /v1/revisions[?pipeline=NAME][&phase=P][&order=key|recent][&limit=N][&after=CURSOR]
//	                                                           one Page: in key order, or
//	                                                           the last written first
//	GET /v1/revisions/{pipeline}/{revision}                    one revision
//	GET /v1/watch[?pipeline=NAME]                              each revision written from
//	                                                           now on, as server-sent events
//
// A revision is types.Revision as JSON, the same everywhere it is served. Each of its
// platforms (platforms.<os/arch>) carries, once the revision is merged, its evidence: why
// its image was accepted into the merge (types.Evidence: kind "build" with the job that
// pushed it, "signature" with the signer, or "unverified"; the digest it is about; a
// detail), next to buildDigest, the digest promoter's build reported. A failed or
// conflicted revision's reason says why it was refused.
//
// With a non-empty token (auth.statusToken), every API request must carry it as a bearer
// token. The page itself (HTML, script, style: no data) is served without it; it asks for
// the token and sends it with its API requests.
func NewHandler(st Reader, token string, opts ...Option) (*Handler, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	h := &Handler{closed: make(chan struct{})}
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/pipelines", func(w http.ResponseWriter, r *http.Request) {
		ps := o.pipelines
		if ps == nil {
			ps = []PipelineInfo{}
		}
		writeJSON(w, http.StatusOK, ps)
	})
	api.HandleFunc("GET /v1/revisions", func(w http.ResponseWriter, r *http.Request) {
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
		phase := types.Phase(q.Get("phase"))
		if phase != "" && !slices.Contains(types.Phases, phase) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "phase must be one of " + phaseList()})
			return
		}
		order := state.Order(q.Get("order"))
		if order != "" && order != state.ByKey && order != state.ByRecent {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "order must be " + string(state.ByKey) + " (the default) or " + string(state.ByRecent)})
			return
		}
		revs, next, err := st.Page(r.Context(), state.Query{
			Pipeline: q.Get("pipeline"), Phase: phase, Order: order,
			After: q.Get("after"), Limit: limit, MaxRead: maxPhaseScan,
		})
		if errors.Is(err, state.ErrBadCursor) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "after must be the next of a page of the same order: " + err.Error()})
			return
		}
		if err != nil {
			stateUnavailable(w, err)
			return
		}
		if revs == nil {
			revs = []*types.Revision{}
		}
		writeJSON(w, http.StatusOK, Page{Revisions: revs, Next: next})
	})
	api.HandleFunc("GET /v1/revisions/{pipeline}/{revision}", func(w http.ResponseWriter, r *http.Request) {
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
	api.Handle("GET /v1/watch", &watcher{st: st, keepAlive: o.keepAlive, log: o.log, closed: h.closed})

	mux := http.NewServeMux()
	registerPage(mux)
	h.mux = mux
	if token == "" {
		mux.Handle("/v1/", api)
		return h, nil
	}
	mux.Handle("/v1/", requireToken(api, token))
	return h, nil
}

// requireToken serves a request to api only with "Authorization: Bearer <token>"
// (bearer.Check, the webhook receivers' check: the scheme in any case, the token compared
// in constant time whatever its length).
func requireToken(api http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := bearer.Check(r, token); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="promoter status"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the status API needs the bearer token configured as auth.statusToken"})
			return
		}
		api.ServeHTTP(w, r)
	})
}

// Handler is the status page and API (NewHandler).
type Handler struct {
	mux       *http.ServeMux
	closed    chan struct{}
	closeOnce sync.Once
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Close ends the watch streams (each client connects again, to another replica or to this
// one restarted), so that a graceful shutdown need not wait for them; run it when the
// server's shutdown starts (listen.WithOnShutdown). Other requests are served as before.
func (h *Handler) Close() {
	h.closeOnce.Do(func() { close(h.closed) })
}

func phaseList() string {
	names := make([]string, len(types.Phases))
	for i, p := range types.Phases {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
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
