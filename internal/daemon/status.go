package daemon

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"

	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// statusRoutes serves the revision state read-only, for `promoter status` and operators:
//
//	GET /v1/revisions[?pipeline=NAME]       every revision, newest first
//	GET /v1/revisions/{pipeline}/{revision} one revision
func (d *daemon) statusRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/revisions", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.store()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		revs, err := st.List(r.Context(), r.URL.Query().Get("pipeline"))
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		sort.Slice(revs, func(i, j int) bool { return revs[i].Updated.After(revs[j].Updated) })
		if revs == nil {
			revs = []*types.Revision{}
		}
		writeJSON(w, http.StatusOK, revs)
	})
	mux.HandleFunc("GET /v1/revisions/{pipeline}/{revision}", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.store()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		rev, err := st.Get(r.Context(), r.PathValue("pipeline"), r.PathValue("revision"))
		switch {
		case errors.Is(err, state.ErrNotFound):
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no state for " + r.PathValue("pipeline") + "/" + r.PathValue("revision")})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, rev)
		}
	})
}

// store is the revision state, available once the bus is ready.
func (d *daemon) store() (*state.Store, error) {
	kv, err := d.bus.Revisions()
	if err != nil {
		return nil, err
	}
	return state.New(kv), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
