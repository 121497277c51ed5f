package events

import (
	"net/http"
	"strings"
)

// GenericPush is the body of POST /v1/events/source/generic.
type GenericPush struct {
	// ID names the delivery. It de-duplicates release tag pushes (when empty, one is
	// derived from pipeline, tag and revision); a source change is de-duplicated by
	// pipeline and revision whatever its id (types.SourceChanged.MsgID).
	ID   string `json:"id,omitempty"`
	Repo string `json:"repo"`
	// Ref is refs/heads/<branch> or just <branch>, or refs/tags/<tag> for a release tag.
	Ref string `json:"ref"`
	// Revision is the commit: of a tag, the commit the tag points at (for an annotated
	// tag, its target, as `git rev-parse <tag>^{commit}` prints it).
	Revision string `json:"revision"`
}

func (r *Receiver) generic(w http.ResponseWriter, req *http.Request) {
	if r.secrets["generic"] == "" {
		r.rejectSource(w, req, "generic", reject(http.StatusNotFound, "generic source webhooks are not enabled: set auth.generic.token"))
		return
	}
	if err := checkBearer(req, r.secrets["generic"], "auth.generic.token"); err != nil {
		r.rejectSource(w, req, "generic", err)
		return
	}
	body, err := readBody(w, req, r.maxBody, jsonMediaType)
	if err != nil {
		r.rejectSource(w, req, "generic", err)
		return
	}
	var p GenericPush
	if err := decodeJSON(body, &p, true); err != nil {
		r.rejectSource(w, req, "generic", reject(http.StatusBadRequest, `decoding body: %v (want {"repo", "ref", "revision", "id"?})`, err))
		return
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"repo", p.Repo}, {"ref", p.Ref}, {"revision", p.Revision}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		r.rejectSource(w, req, "generic", reject(http.StatusBadRequest, "missing %s", strings.Join(missing, ", ")))
		return
	}
	ref := p.Ref
	if !strings.HasPrefix(ref, "refs/") {
		ref = "refs/heads/" + ref
	}
	r.publishSource(w, req, "generic", push{delivery: p.ID, repos: []string{p.Repo}, ref: ref, revision: p.Revision,
		commit: p.Revision, commitField: "revision"})
}
