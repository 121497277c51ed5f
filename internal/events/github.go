package events

import (
	"encoding/json"
	"net/http"
	"net/url"
)

// githubFormMediaType is how GitHub sends a delivery unless the webhook's content type is
// set to application/json (it is GitHub's default): the JSON payload as the form field
// named payload.
const githubFormMediaType = "application/x-www-form-urlencoded"

// githubPush holds the fields of GitHub's push event payload promoter reads. A tag push is
// a push event too (ref refs/tags/<tag>): its after is the tag object of an annotated tag,
// and head_commit is the commit the tag points at, lightweight or annotated (GitHub's push
// payload documentation; testdata/source/README.md).
type githubPush struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	HeadCommit *struct {
		ID string `json:"id"`
	} `json:"head_commit"`
	Repository struct {
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		HTMLURL  string `json:"html_url"`
		GitURL   string `json:"git_url"`
	} `json:"repository"`
}

func (r *Receiver) github(w http.ResponseWriter, req *http.Request) {
	if r.secrets["github"] == "" {
		r.rejectSource(w, req, "github", reject(http.StatusNotFound, "GitHub webhooks are not enabled: set auth.github.secret"))
		return
	}
	body, err := readBody(w, req, r.maxBody, jsonMediaType, githubFormMediaType)
	if err != nil {
		r.rejectSource(w, req, "github", err)
		return
	}
	// GitHub signs the bytes it sends, the form-encoded ones included: the signature is
	// checked on the raw body, before anything of it is decoded.
	if err := checkGitHubSignature(req, body, r.secrets["github"]); err != nil {
		r.rejectSource(w, req, "github", err)
		return
	}
	switch req.Header.Get("X-GitHub-Event") {
	case "push":
	case "ping":
		r.ignoreSource(w, "github", reasonPing, "ping")
		return
	case "":
		r.rejectSource(w, req, "github", reject(http.StatusBadRequest, "missing X-GitHub-Event header"))
		return
	default:
		r.ignoreSource(w, "github", reasonNotAPush, "event "+req.Header.Get("X-GitHub-Event"))
		return
	}
	payload, err := githubPayload(req, body)
	if err != nil {
		r.rejectSource(w, req, "github", err)
		return
	}
	var p githubPush
	if err := json.Unmarshal(payload, &p); err != nil {
		r.rejectSource(w, req, "github", reject(http.StatusBadRequest, "decoding GitHub push payload: %v", err))
		return
	}
	if p.Ref == "" || p.After == "" {
		r.rejectSource(w, req, "github", reject(http.StatusBadRequest, "GitHub push payload has no ref or after"))
		return
	}
	if p.Deleted {
		r.ignoreSource(w, "github", reasonRefDeleted, "ref deleted")
		return
	}
	ps := push{
		delivery:    req.Header.Get("X-GitHub-Delivery"),
		repos:       []string{p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL, p.Repository.GitURL},
		ref:         p.Ref,
		revision:    p.After,
		commitField: "head_commit.id",
	}
	if p.HeadCommit != nil {
		ps.commit = p.HeadCommit.ID
	}
	r.publishSource(w, req, "github", ps)
}

// githubPayload is the JSON of a verified delivery: the body itself, or the one payload
// field of a form-encoded body.
func githubPayload(req *http.Request, body []byte) ([]byte, error) {
	if mediaType(req) != githubFormMediaType {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, reject(http.StatusBadRequest, "decoding the form-encoded GitHub delivery: %v", err)
	}
	switch vs := form["payload"]; len(vs) {
	case 1:
		return []byte(vs[0]), nil
	case 0:
		return nil, reject(http.StatusBadRequest, "form-encoded GitHub delivery has no payload field (GitHub sends payload=<JSON>)")
	default:
		return nil, reject(http.StatusBadRequest, "form-encoded GitHub delivery has %d payload fields, want one", len(vs))
	}
}
