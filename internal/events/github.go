package events

import (
	"encoding/json"
	"net/http"
)

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
	if r.secrets.GitHubSecret == "" {
		r.rejectSource(w, req, "github", reject(http.StatusNotFound, "GitHub webhooks are not enabled: set auth.github.secret"))
		return
	}
	body, err := readBody(w, req, r.maxBody, jsonMediaType)
	if err != nil {
		r.rejectSource(w, req, "github", err)
		return
	}
	if err := checkGitHubSignature(req, body, r.secrets.GitHubSecret); err != nil {
		r.rejectSource(w, req, "github", err)
		return
	}
	switch req.Header.Get("X-GitHub-Event") {
	case "push":
	case "ping":
		r.ignoreSource(w, "github", "ping")
		return
	case "":
		r.rejectSource(w, req, "github", reject(http.StatusBadRequest, "missing X-GitHub-Event header"))
		return
	default:
		r.ignoreSource(w, "github", "event "+req.Header.Get("X-GitHub-Event"))
		return
	}
	var p githubPush
	if err := json.Unmarshal(body, &p); err != nil {
		r.rejectSource(w, req, "github", reject(http.StatusBadRequest, "decoding GitHub push payload: %v", err))
		return
	}
	if p.Ref == "" || p.After == "" {
		r.rejectSource(w, req, "github", reject(http.StatusBadRequest, "GitHub push payload has no ref or after"))
		return
	}
	if p.Deleted {
		r.ignoreSource(w, "github", "ref deleted")
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
