package events

import (
	"encoding/json"
	"net/http"

	"github.com/promoter-dev/promoter/internal/bearer"
)

// gitlabPush holds the fields of GitLab's Push Hook and Tag Push Hook payloads promoter
// reads. In a tag push, after is an annotated tag's tag object and checkout_sha the commit
// the tag points at (GitLab's "Tag events" documentation; testdata/source/README.md).
type gitlabPush struct {
	ObjectKind  string `json:"object_kind"`
	Ref         string `json:"ref"`
	After       string `json:"after"`
	CheckoutSHA string `json:"checkout_sha"`
	Project     struct {
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		WebURL     string `json:"web_url"`
	} `json:"project"`
	Repository struct {
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		Homepage   string `json:"homepage"`
	} `json:"repository"`
}

func (r *Receiver) gitlab(w http.ResponseWriter, req *http.Request) {
	if r.secrets["gitlab"] == "" {
		r.rejectSource(w, req, "gitlab", reject(http.StatusNotFound, "GitLab webhooks are not enabled: set auth.gitlab.token"))
		return
	}
	tok := req.Header.Get("X-Gitlab-Token")
	if tok == "" {
		r.rejectSource(w, req, "gitlab", reject(http.StatusUnauthorized, "missing X-Gitlab-Token; set the webhook's secret token in GitLab to auth.gitlab.token"))
		return
	}
	if !bearer.Equal(tok, r.secrets["gitlab"]) {
		r.rejectSource(w, req, "gitlab", reject(http.StatusUnauthorized, "wrong X-Gitlab-Token; it must equal auth.gitlab.token"))
		return
	}
	body, err := readBody(w, req, r.maxBody, jsonMediaType)
	if err != nil {
		r.rejectSource(w, req, "gitlab", err)
		return
	}
	ev := req.Header.Get("X-Gitlab-Event")
	kind, ok := map[string]string{"Push Hook": "push", "Tag Push Hook": "tag_push"}[ev]
	if !ok {
		r.ignoreSource(w, "gitlab", reasonNotAPush, "event "+ev)
		return
	}
	var p gitlabPush
	if err := json.Unmarshal(body, &p); err != nil {
		r.rejectSource(w, req, "gitlab", reject(http.StatusBadRequest, "decoding GitLab push payload: %v", err))
		return
	}
	if p.ObjectKind != kind || p.Ref == "" || p.After == "" {
		r.rejectSource(w, req, "gitlab", reject(http.StatusBadRequest, "GitLab %s payload is not a %s (object_kind %q) or has no ref/after", ev, kind, p.ObjectKind))
		return
	}
	r.publishSource(w, req, "gitlab", push{
		delivery: gitlabDelivery(req.Header),
		repos: []string{p.Project.GitHTTPURL, p.Project.GitSSHURL, p.Project.WebURL,
			p.Repository.GitHTTPURL, p.Repository.GitSSHURL, p.Repository.Homepage},
		ref:         p.Ref,
		revision:    p.After,
		commit:      p.CheckoutSHA,
		commitField: "checkout_sha",
	})
}

// gitlabDelivery is the id that names a GitLab delivery in the logs (pipeline and revision
// de-duplicate it). Idempotency-Key (GitLab 17.4+) is documented to stay the same when
// GitLab retries or a user resends a delivery; X-Gitlab-Event-UUID is not (it is a
// recursion-detection id), so it is only the fallback for servers that do not send
// Idempotency-Key.
func gitlabDelivery(h http.Header) string {
	if k := h.Get("Idempotency-Key"); k != "" {
		return k
	}
	return h.Get("X-Gitlab-Event-UUID")
}
