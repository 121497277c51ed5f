package events

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/types"
)

const (
	githubPath  = "/v1/events/source/github"
	gitlabPath  = "/v1/events/source/gitlab"
	genericPath = "/v1/events/source/generic"

	githubDelivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	gitlabUUID     = "8a2b4e2c-1f5e-4c7a-9a62-0c1f0a3b7d11"

	githubRevision  = "59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5"
	gitlabRevision  = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
	genericRevision = "3f786850e387550fdab836ed7e6dc881de23001b"
)

// sourceCase is one request to a source endpoint and what must come of it.
type sourceCase struct {
	name       string
	header     http.Header
	body       []byte
	wantStatus int
	wantErr    string  // part of the error of a rejection
	want       Summary // of a 200
	// wantEvent is the one message stored, if any: a *types.SourceChanged or a
	// *types.ReleaseTagged.
	wantEvent any
}

func runSourceCases(t *testing.T, path, source string, tests []sourceCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			got := h.post(t, path, tt.body, tt.header)
			if got.status != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", got.status, got.body, tt.wantStatus)
			}
			calls, stored := h.pub.Snapshot()
			if tt.wantStatus != http.StatusOK {
				if msg := got.errorMessage(t); !strings.Contains(msg, tt.wantErr) {
					t.Errorf("got error %q, want it to contain %q", msg, tt.wantErr)
				}
				if calls != 0 {
					t.Errorf("got %d publishes for a rejected request, want 0", calls)
				}
				if n := h.count(source, "push", "rejected"); n != 1 {
					t.Errorf("got promoter_events_received_total{%s,push,rejected} = %v, want 1", source, n)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got.summary(t)); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			var gotEvent any
			switch len(stored) {
			case 0:
			case 1:
				var subject, id string
				switch ev := stored[0].Value.(type) {
				case types.SourceChanged:
					// A source change's message id is its pipeline and revision, whoever reports it.
					gotEvent, subject, id = &ev, types.SubjectSourceChanged, "source/"+ev.Pipeline+"/"+ev.Revision
				case types.ReleaseTagged:
					gotEvent, subject, id = &ev, types.SubjectReleaseTagged, ev.ID
				default:
					t.Fatalf("published a %T", ev)
				}
				if stored[0].Subject != subject || stored[0].MsgID != id {
					t.Errorf("published on %s with msg id %q, want %s and the id %q", stored[0].Subject, stored[0].MsgID, subject, id)
				}
			default:
				t.Fatalf("got %d messages for one push, want at most 1", len(stored))
			}
			if diff := cmp.Diff(tt.wantEvent, gotEvent); diff != "" {
				t.Errorf("published (-want +got):\n%s", diff)
			}
		})
	}
}

// githubHeader is what GitHub sends for a JSON webhook with a secret, for body.
func githubHeader(event string, body []byte) http.Header {
	return http.Header{
		"Content-Type":        {"application/json"},
		"User-Agent":          {"GitHub-Hookshot/044aadd"},
		"X-Github-Event":      {event},
		"X-Github-Delivery":   {githubDelivery},
		"X-Github-Hook-Id":    {"30"},
		"X-Hub-Signature-256": {signGitHub(githubSecret, body)},
	}
}

// edit returns h with keys set (a value "" deletes the key).
func edit(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			h.Del(kv[i])
		} else {
			h.Set(kv[i], kv[i+1])
		}
	}
	return h
}

func TestGitHubWebhook(t *testing.T) {
	push := readTestdata(t, "source", "github-push.json")
	ping := readTestdata(t, "source", "github-ping.json")
	deleted := readTestdata(t, "source", "github-push-delete.json")
	signed := func(event string, body []byte) sourceCase {
		return sourceCase{header: githubHeader(event, body), body: body, wantStatus: 200}
	}
	ignored := func(name, event string, body []byte) sourceCase {
		c := signed(event, body)
		c.name, c.want = name, Summary{Ignored: 1}
		return c
	}
	kept := &types.SourceChanged{
		ID: githubDelivery, Pipeline: "web", Repo: "https://github.com/acme/web.git",
		Ref: "refs/heads/main", Revision: githubRevision, Received: testNow,
	}
	otherRepo := setJSON(t, push,
		"repository.clone_url", "https://github.com/acme/other.git", "repository.ssh_url", "git@github.com:acme/other.git",
		"repository.html_url", "https://github.com/acme/other", "repository.git_url", "git://github.com/acme/other.git")
	sshOnly := setJSON(t, push, "repository.clone_url", "", "repository.html_url", "", "repository.git_url", "")
	sha1Sig := func(secret string, body []byte) string {
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write(body)
		return "sha1=" + hex.EncodeToString(mac.Sum(nil))
	}

	tests := []sourceCase{
		{name: "push", header: githubHeader("push", push), body: push, wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept},
		{name: "push with charset", header: edit(githubHeader("push", push), "Content-Type", "application/json; charset=utf-8"), body: push,
			wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept},
		{name: "repository known by its ssh url only", header: githubHeader("push", sshOnly), body: sshOnly, wantStatus: 200, want: Summary{Accepted: 1},
			wantEvent: &types.SourceChanged{ID: githubDelivery, Pipeline: "web", Repo: "git@github.com:acme/web.git", Ref: "refs/heads/main", Revision: githubRevision, Received: testNow}},
		{name: "bad signature", header: edit(githubHeader("push", push), "X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64)), body: push,
			wantStatus: 401, wantErr: "does not match the body signed with auth.github.secret"},
		{name: "signature from another secret", header: edit(githubHeader("push", push), "X-Hub-Signature-256", signGitHub("not-"+githubSecret, push)), body: push,
			wantStatus: 401, wantErr: "does not match"},
		{name: "body changed after signing", header: githubHeader("push", push), body: append(append([]byte(nil), push...), ' '),
			wantStatus: 401, wantErr: "does not match"},
		{name: "missing signature", header: edit(githubHeader("push", push), "X-Hub-Signature-256", ""), body: push,
			wantStatus: 401, wantErr: "missing X-Hub-Signature-256"},
		// A correct SHA-1 signature is still refused: SHA-1 is never a fallback.
		{name: "sha1 signature only", header: edit(githubHeader("push", push), "X-Hub-Signature-256", "", "X-Hub-Signature", sha1Sig(githubSecret, push)), body: push,
			wantStatus: 401, wantErr: "SHA-1 signatures are not accepted"},
		{name: "good sha1 beside a bad sha256", header: edit(githubHeader("push", push), "X-Hub-Signature-256", signGitHub("wrong", push), "X-Hub-Signature", sha1Sig(githubSecret, push)), body: push,
			wantStatus: 401, wantErr: "does not match"},
		{name: "sha1 value in the sha256 header", header: edit(githubHeader("push", push), "X-Hub-Signature-256", sha1Sig(githubSecret, push)), body: push,
			wantStatus: 401, wantErr: "must start with sha256="},
		{name: "signature without prefix", header: edit(githubHeader("push", push), "X-Hub-Signature-256", strings.TrimPrefix(signGitHub(githubSecret, push), "sha256=")), body: push,
			wantStatus: 401, wantErr: "must start with sha256="},
		{name: "signature not hex", header: edit(githubHeader("push", push), "X-Hub-Signature-256", "sha256=zz"), body: push,
			wantStatus: 401, wantErr: "not hex"},
		{name: "truncated signature", header: edit(githubHeader("push", push), "X-Hub-Signature-256", signGitHub(githubSecret, push)[:41]), body: push,
			wantStatus: 401, wantErr: "does not match"},
		ignored("branch deleted", "push", deleted),
		ignored("zero after without deleted flag", "push", setJSON(t, deleted, "deleted", false)),
		ignored("other branch", "push", setJSON(t, push, "ref", "refs/heads/feature/login")),
		ignored("tag that is no release", "push", setJSON(t, push, "ref", "refs/tags/nightly")),
		ignored("other repository", "push", otherRepo),
		ignored("ping", "ping", ping),
		ignored("other event", "issues", []byte(`{"action": "opened"}`)),
		{name: "missing event header", header: edit(githubHeader("push", push), "X-Github-Event", ""), body: push,
			wantStatus: 400, wantErr: "missing X-GitHub-Event"},
		{name: "malformed push", header: githubHeader("push", []byte(`{"ref": `)), body: []byte(`{"ref": `),
			wantStatus: 400, wantErr: "decoding GitHub push payload"},
		{name: "push without after", header: githubHeader("push", setJSON(t, push, "after", nil)), body: setJSON(t, push, "after", nil),
			wantStatus: 400, wantErr: "no ref or after"},
		{name: "revision that cannot be a tag", header: githubHeader("push", setJSON(t, push, "after", "59b2 0b8d")), body: setJSON(t, push, "after", "59b2 0b8d"),
			wantStatus: 400, wantErr: "is not a commit id"},
		{name: "plain text", header: edit(githubHeader("push", push), "Content-Type", "text/plain"), body: push,
			wantStatus: 415, wantErr: "application/json, application/x-www-form-urlencoded"},
	}
	runSourceCases(t, githubPath, "github", tests)
}

// githubForm is body (a JSON fixture) as GitHub sends it with its default content type,
// application/x-www-form-urlencoded: the JSON in the form field payload.
func githubForm(body []byte) []byte {
	return []byte(url.Values{"payload": {string(body)}}.Encode())
}

// githubFormHeader is what GitHub sends for a form-encoded webhook with a secret: the
// signature covers form, the form-encoded body, not the JSON inside it.
func githubFormHeader(event string, form []byte) http.Header {
	return edit(githubHeader(event, form), "Content-Type", githubFormMediaType)
}

// TestGitHubFormWebhook: GitHub's default content type carries the same JSON in a payload
// form field, and the signature is the HMAC of the form-encoded body exactly as sent.
func TestGitHubFormWebhook(t *testing.T) {
	push := readTestdata(t, "source", "github-push.json")
	form := githubForm(push)
	kept := &types.SourceChanged{
		ID: githubDelivery, Pipeline: "web", Repo: "https://github.com/acme/web.git",
		Ref: "refs/heads/main", Revision: githubRevision, Received: testNow,
	}
	formCase := func(name, event string, form []byte, status int) sourceCase {
		return sourceCase{name: name, header: githubFormHeader(event, form), body: form, wantStatus: status}
	}
	ignored := func(name, event string, body []byte) sourceCase {
		c := formCase(name, event, githubForm(body), 200)
		c.want = Summary{Ignored: 1}
		return c
	}
	bad := func(name string, form []byte, wantErr string) sourceCase {
		c := formCase(name, "push", form, 400)
		c.wantErr = wantErr
		return c
	}
	// Another valid encoding of the same form (spaces as %20, not +): whatever GitHub's
	// encoder does, the bytes it signed are the bytes checked.
	percent := []byte("payload=" + strings.ReplaceAll(url.QueryEscape(string(push)), "+", "%20"))
	if bytes.Equal(percent, form) {
		t.Fatal("the fixture has no space: the two encodings are the same")
	}

	tests := []sourceCase{
		{name: "push", header: githubFormHeader("push", form), body: form, wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept},
		{name: "push encoded with %20", header: githubFormHeader("push", percent), body: percent, wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept},
		{name: "push with a field beside payload", header: githubFormHeader("push", append([]byte("zen=hi&"), form...)), body: append([]byte("zen=hi&"), form...),
			wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept},
		ignored("ping", "ping", readTestdata(t, "source", "github-ping.json")),
		ignored("branch deleted", "push", readTestdata(t, "source", "github-push-delete.json")),
		ignored("other branch", "push", setJSON(t, push, "ref", "refs/heads/feature/login")),
		{name: "wrong signature", header: edit(githubFormHeader("push", form), "X-Hub-Signature-256", signGitHub("not-"+githubSecret, form)), body: form,
			wantStatus: 401, wantErr: "does not match the body signed with auth.github.secret"},
		// The mistake GitHub's docs warn of: signing (or verifying) the decoded JSON.
		{name: "signature of the JSON inside the form", header: edit(githubFormHeader("push", form), "X-Hub-Signature-256", signGitHub(githubSecret, push)), body: form,
			wantStatus: 401, wantErr: "does not match"},
		{name: "form re-encoded after signing", header: githubFormHeader("push", form), body: percent,
			wantStatus: 401, wantErr: "does not match"},
		{name: "missing signature", header: edit(githubFormHeader("push", form), "X-Hub-Signature-256", ""), body: form,
			wantStatus: 401, wantErr: "missing X-Hub-Signature-256"},
		bad("malformed form", []byte("payload=%zz"), "decoding the form-encoded GitHub delivery"),
		bad("semicolon separator", append([]byte("a=1;"), form...), "decoding the form-encoded GitHub delivery"),
		bad("no payload field", []byte("zen=hi"), "no payload field"),
		bad("payload twice", append(append(append([]byte(nil), form...), '&'), form...), "2 payload fields"),
		bad("JSON labelled as a form", push, "no payload field"),
		bad("payload that is not JSON", githubForm([]byte(`{"ref": `)), "decoding GitHub push payload"),
		{name: "form labelled as JSON", header: edit(githubFormHeader("push", form), "Content-Type", "application/json"), body: form,
			wantStatus: 400, wantErr: "decoding GitHub push payload"},
	}
	runSourceCases(t, githubPath, "github", tests)
}

// gitlabHeader is what GitLab 17.4+ sends for a webhook with a secret token.
func gitlabHeader(event string) http.Header {
	return http.Header{
		"Content-Type":          {"application/json"},
		"User-Agent":            {"GitLab/17.6.0"},
		"X-Gitlab-Event":        {event},
		"X-Gitlab-Event-Uuid":   {gitlabUUID},
		"X-Gitlab-Webhook-Uuid": {"3e9f2c8a-5d1b-4f6e-8a7c-2b1d0e9f8a7b"},
		"X-Gitlab-Instance":     {"https://gitlab.example.com"},
		"X-Gitlab-Token":        {gitlabToken},
	}
}

func TestGitLabWebhook(t *testing.T) {
	push := readTestdata(t, "source", "gitlab-push.json")
	deleted := readTestdata(t, "source", "gitlab-push-delete.json")
	kept := func(id string) *types.SourceChanged {
		return &types.SourceChanged{
			ID: id, Pipeline: "api", Repo: "https://gitlab.example.com/acme/api.git",
			Ref: "refs/heads/main", Revision: gitlabRevision, Received: testNow,
		}
	}
	ignored := func(name, event string, body []byte) sourceCase {
		return sourceCase{name: name, header: gitlabHeader(event), body: body, wantStatus: 200, want: Summary{Ignored: 1}}
	}
	otherRepo := setJSON(t, push,
		"project.git_http_url", "https://gitlab.example.com/acme/other.git", "project.git_ssh_url", "git@gitlab.example.com:acme/other.git",
		"project.web_url", "https://gitlab.example.com/acme/other", "repository.git_http_url", "https://gitlab.example.com/acme/other.git",
		"repository.git_ssh_url", "git@gitlab.example.com:acme/other.git", "repository.homepage", "https://gitlab.example.com/acme/other")

	tests := []sourceCase{
		{name: "push", header: gitlabHeader("Push Hook"), body: push, wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept(gitlabUUID)},
		// Idempotency-Key is what stays the same across GitLab's retries and resends.
		{name: "push with idempotency key", header: edit(gitlabHeader("Push Hook"), "Idempotency-Key", "0d1f0c3e-2a4b-4c5d-8e9f-a0b1c2d3e4f5"), body: push,
			wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept("0d1f0c3e-2a4b-4c5d-8e9f-a0b1c2d3e4f5")},
		{name: "wrong token", header: edit(gitlabHeader("Push Hook"), "X-Gitlab-Token", "not-"+gitlabToken), body: push,
			wantStatus: 401, wantErr: "wrong X-Gitlab-Token; it must equal auth.gitlab.token"},
		{name: "token prefix", header: edit(gitlabHeader("Push Hook"), "X-Gitlab-Token", gitlabToken[:5]), body: push,
			wantStatus: 401, wantErr: "wrong X-Gitlab-Token"},
		{name: "another receiver's secret", header: edit(gitlabHeader("Push Hook"), "X-Gitlab-Token", githubSecret), body: push,
			wantStatus: 401, wantErr: "wrong X-Gitlab-Token"},
		{name: "missing token", header: edit(gitlabHeader("Push Hook"), "X-Gitlab-Token", ""), body: push,
			wantStatus: 401, wantErr: "missing X-Gitlab-Token"},
		{name: "token as bearer", header: edit(gitlabHeader("Push Hook"), "X-Gitlab-Token", "", "Authorization", "Bearer "+gitlabToken), body: push,
			wantStatus: 401, wantErr: "missing X-Gitlab-Token"},
		ignored("branch deleted", "Push Hook", deleted),
		ignored("other branch", "Push Hook", setJSON(t, push, "ref", "refs/heads/feature")),
		ignored("other repository", "Push Hook", otherRepo),
		ignored("tag push that is no release", "Tag Push Hook", setJSON(t, push, "object_kind", "tag_push", "ref", "refs/tags/nightly")),
		ignored("merge request", "Merge Request Hook", []byte(`{"object_kind": "merge_request"}`)),
		{name: "push hook that is not a push", header: gitlabHeader("Push Hook"), body: setJSON(t, push, "object_kind", "tag_push"),
			wantStatus: 400, wantErr: `object_kind "tag_push"`},
		{name: "malformed", header: gitlabHeader("Push Hook"), body: []byte(`{"object_kind": "push",`),
			wantStatus: 400, wantErr: "decoding GitLab push payload"},
		{name: "plain text", header: edit(gitlabHeader("Push Hook"), "Content-Type", "text/plain"), body: push,
			wantStatus: 415, wantErr: "application/json"},
	}
	runSourceCases(t, gitlabPath, "gitlab", tests)
}

func genericHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + genericToken}}
}

func TestGenericWebhook(t *testing.T) {
	push := readTestdata(t, "source", "generic-push.json")
	kept := func(id, repo, ref string) *types.SourceChanged {
		return &types.SourceChanged{ID: id, Pipeline: "worker", Repo: repo, Ref: ref, Revision: genericRevision, Received: testNow}
	}
	ignored := func(name string, body []byte) sourceCase {
		return sourceCase{name: name, header: genericHeader(), body: body, wantStatus: 200, want: Summary{Ignored: 1}}
	}
	bad := func(name string, body []byte, wantErr string) sourceCase {
		return sourceCase{name: name, header: genericHeader(), body: body, wantStatus: 400, wantErr: wantErr}
	}
	tests := []sourceCase{
		{name: "push", header: genericHeader(), body: push, wantStatus: 200, want: Summary{Accepted: 1},
			wantEvent: kept("ci-run-8841", "https://git.example/acme/worker.git", "refs/heads/release")},
		{name: "full ref and scp-like repo", header: genericHeader(), body: setJSON(t, push, "ref", "refs/heads/release", "repo", "git@git.example:acme/worker.git"),
			wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: kept("ci-run-8841", "git@git.example:acme/worker.git", "refs/heads/release")},
		{name: "wrong token", header: edit(genericHeader(), "Authorization", "Bearer nope"), body: push, wantStatus: 401, wantErr: "auth.generic.token"},
		{name: "no token", header: edit(genericHeader(), "Authorization", ""), body: push, wantStatus: 401, wantErr: "auth.generic.token"},
		{name: "registry token", header: edit(genericHeader(), "Authorization", "Bearer "+registryToken), body: push, wantStatus: 401, wantErr: "wrong bearer token"},
		{name: "basic auth", header: edit(genericHeader(), "Authorization", "Basic Z2VuZXJpYzpzM2NyZXQ="), body: push, wantStatus: 401, wantErr: "not a Bearer token"},
		ignored("zero revision", setJSON(t, push, "revision", "0000000000000000000000000000000000000000")),
		ignored("other branch", setJSON(t, push, "ref", "main")),
		ignored("tag", setJSON(t, push, "ref", "refs/tags/v1")),
		ignored("other repository", setJSON(t, push, "repo", "https://git.example/acme/web.git")),
		bad("unknown field", setJSON(t, push, "branch", "release"), `unknown field "branch"`),
		bad("nothing", []byte(`{}`), "missing repo, ref, revision"),
		bad("missing revision", setJSON(t, push, "revision", nil), "missing revision"),
		bad("revision with a slash", setJSON(t, push, "revision", "feature/x"), "is not a commit id"),
		bad("two documents", append(append([]byte(nil), push...), push...), "data after the JSON object"),
		bad("not an object", []byte(`"3f786850"`), "decoding body"),
		{name: "yaml", header: edit(genericHeader(), "Content-Type", "application/yaml"), body: push, wantStatus: 415, wantErr: "application/json"},
	}
	runSourceCases(t, genericPath, "generic", tests)
}

// TestReleaseTagPushes: a pushed tag that a pipeline's source.releaseTags match becomes a
// ReleaseTagged event naming the commit the tag points at: for an annotated tag, GitHub's
// head_commit.id and GitLab's checkout_sha, never the tag object in after.
func TestReleaseTagPushes(t *testing.T) {
	ghLight := readTestdata(t, "source", "github-tag-push.json")
	ghAnnotated := readTestdata(t, "source", "github-tag-push-annotated.json")
	glLight := readTestdata(t, "source", "gitlab-tag-push.json")
	glAnnotated := readTestdata(t, "source", "gitlab-tag-push-annotated.json")
	genTag := readTestdata(t, "source", "generic-tag.json")
	release := func(id, pipeline, repo, tag, rev string) *types.ReleaseTagged {
		return &types.ReleaseTagged{ID: id, Pipeline: pipeline, Repo: repo, Tag: tag, Revision: rev, Received: testNow}
	}
	const (
		ghRepo = "https://github.com/acme/web.git"
		glRepo = "https://gitlab.example.com/acme/api.git"
	)
	kept := func(name string, header http.Header, body []byte, want *types.ReleaseTagged) sourceCase {
		return sourceCase{name: name, header: header, body: body, wantStatus: 200, want: Summary{Accepted: 1}, wantEvent: want}
	}
	ignored := func(name string, header http.Header, body []byte) sourceCase {
		return sourceCase{name: name, header: header, body: body, wantStatus: 200, want: Summary{Ignored: 1}}
	}
	bad := func(name string, header http.Header, body []byte, wantErr string) sourceCase {
		return sourceCase{name: name, header: header, body: body, wantStatus: 400, wantErr: wantErr}
	}
	gh := func(body []byte) http.Header { return githubHeader("push", body) }
	ghDeleted := setJSON(t, ghLight, "deleted", true, "after", strings.Repeat("0", 40), "head_commit", nil)
	ghNoHead := setJSON(t, ghAnnotated, "head_commit", nil)
	ghBadTag := setJSON(t, ghLight, "ref", "refs/tags/v1+build")
	ghBadHead := setJSON(t, ghLight, "head_commit", map[string]any{"id": "59b2 0b8d"})
	ghOther := setJSON(t, ghLight, "repository.clone_url", "https://github.com/acme/other.git", "repository.ssh_url", "",
		"repository.html_url", "", "repository.git_url", "")

	t.Run("github", func(t *testing.T) {
		runSourceCases(t, githubPath, "github", []sourceCase{
			kept("lightweight tag", gh(ghLight), ghLight, release(githubDelivery, "web", ghRepo, "v1.2.3", githubRevision)),
			kept("annotated tag names its commit, not the tag object", gh(ghAnnotated), ghAnnotated,
				release(githubDelivery, "web", ghRepo, "v1.3.0", githubRevision)),
			ignored("tag deleted", gh(ghDeleted), ghDeleted),
			ignored("tag of another repository", gh(ghOther), ghOther),
			bad("tag push without head_commit", gh(ghNoHead), ghNoHead, "names no commit (head_commit.id is empty)"),
			bad("head_commit that is not a commit id", gh(ghBadHead), ghBadHead, "head_commit.id of tag v1.2.3 is not a commit id"),
			bad("release tag that cannot be an image tag", gh(ghBadTag), ghBadTag, "tag v1+build matches source.releaseTags of pipeline web but cannot be promoted"),
		})
	})
	glDeleted := setJSON(t, glLight, "after", strings.Repeat("0", 40), "checkout_sha", nil)
	t.Run("gitlab", func(t *testing.T) {
		runSourceCases(t, gitlabPath, "gitlab", []sourceCase{
			kept("lightweight tag", gitlabHeader("Tag Push Hook"), glLight, release(gitlabUUID, "api", glRepo, "v2.0.0", gitlabRevision)),
			kept("annotated tag names checkout_sha, not the tag object", gitlabHeader("Tag Push Hook"), glAnnotated,
				release(gitlabUUID, "api", glRepo, "v2.1.0", gitlabRevision)),
			ignored("tag deleted", gitlabHeader("Tag Push Hook"), glDeleted),
			bad("tag push hook that is not a tag push", gitlabHeader("Tag Push Hook"), setJSON(t, glLight, "object_kind", "push"), `is not a tag_push (object_kind "push")`),
			bad("tag push without checkout_sha", gitlabHeader("Tag Push Hook"), setJSON(t, glAnnotated, "checkout_sha", nil), "names no commit (checkout_sha is empty)"),
		})
	})
	t.Run("generic", func(t *testing.T) {
		runSourceCases(t, genericPath, "generic", []sourceCase{
			kept("tag", genericHeader(), genTag, release("ci-run-8850", "worker", "https://git.example/acme/worker.git", "v3.0.0", genericRevision)),
			// A ref without refs/ is a branch.
			ignored("tag name without refs/tags/", genericHeader(), setJSON(t, genTag, "ref", "v3.0.0")),
			ignored("tag that is no release", genericHeader(), setJSON(t, genTag, "ref", "refs/tags/v2.0.0")),
		})
	})
}

// TestSourceDisabled: a source receiver without a configured secret is not there (404),
// and the answer names the configuration key that enables it.
func TestSourceDisabled(t *testing.T) {
	tests := []struct {
		path, source, key string
		header            http.Header
		body              []byte
	}{
		{githubPath, "github", "auth.github.secret", githubHeader("push", readTestdata(t, "source", "github-push.json")), readTestdata(t, "source", "github-push.json")},
		{gitlabPath, "gitlab", "auth.gitlab.token", gitlabHeader("Push Hook"), readTestdata(t, "source", "gitlab-push.json")},
		{genericPath, "generic", "auth.generic.token", genericHeader(), readTestdata(t, "source", "generic-push.json")},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			h := newHarness(t, Secrets{"registry": registryToken})
			got := h.post(t, tt.path, tt.body, tt.header)
			if got.status != http.StatusNotFound {
				t.Fatalf("got status %d (%s), want 404", got.status, got.body)
			}
			if msg := got.errorMessage(t); !strings.Contains(msg, "set "+tt.key) {
				t.Errorf("got error %q, want it to name %s", msg, tt.key)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("got %d publishes, want 0", calls)
			}
			if n := h.count(tt.source, "push", "rejected"); n != 1 {
				t.Errorf("got rejected count %v, want 1", n)
			}
		})
	}
}

// TestSourceDeduplication: every delivery of one pipeline's revision is one message, by
// pipeline and revision (types.SourceChanged.MsgID, which the source poller uses too),
// whatever its delivery id: a redelivery, a resend under a new id, one without an id; a
// push of another revision is a message of its own.
func TestSourceDeduplication(t *testing.T) {
	ghPush := readTestdata(t, "source", "github-push.json")
	ghNext := setJSON(t, ghPush, "after", "a7f3c0de5c6ff8d09518454d4dd8b7b30f095ab5")
	glPush := readTestdata(t, "source", "gitlab-push.json")
	genPush := readTestdata(t, "source", "generic-push.json")
	ghTag := readTestdata(t, "source", "github-tag-push-annotated.json")
	ghTag2 := setJSON(t, ghTag, "ref", "refs/tags/v1.3.1") // another tag of the same commit
	type delivery struct {
		header http.Header
		body   []byte
		want   Summary
	}
	tests := []struct {
		name       string
		path       string
		deliveries []delivery
		wantIDs    []string // message ids stored
	}{
		{name: "github same delivery", path: githubPath, deliveries: []delivery{
			{githubHeader("push", ghPush), ghPush, Summary{Accepted: 1}},
			{githubHeader("push", ghPush), ghPush, Summary{Duplicates: 1}},
		}, wantIDs: []string{"source/web/" + githubRevision}},
		{name: "github resent under a new delivery id", path: githubPath, deliveries: []delivery{
			{githubHeader("push", ghPush), ghPush, Summary{Accepted: 1}},
			{edit(githubHeader("push", ghPush), "X-Github-Delivery", "99999999-2222-3333-4444-555555555555"), ghPush, Summary{Duplicates: 1}},
		}, wantIDs: []string{"source/web/" + githubRevision}},
		{name: "github without delivery id", path: githubPath, deliveries: []delivery{
			{edit(githubHeader("push", ghPush), "X-Github-Delivery", ""), ghPush, Summary{Accepted: 1}},
			{edit(githubHeader("push", ghPush), "X-Github-Delivery", ""), ghPush, Summary{Duplicates: 1}},
			{edit(githubHeader("push", ghNext), "X-Github-Delivery", ""), ghNext, Summary{Accepted: 1}},
		}, wantIDs: []string{"source/web/" + githubRevision, "source/web/a7f3c0de5c6ff8d09518454d4dd8b7b30f095ab5"}},
		{name: "gitlab same idempotency key, new event uuid", path: gitlabPath, deliveries: []delivery{
			{edit(gitlabHeader("Push Hook"), "Idempotency-Key", "k-1"), glPush, Summary{Accepted: 1}},
			{edit(gitlabHeader("Push Hook"), "Idempotency-Key", "k-1", "X-Gitlab-Event-Uuid", "another-uuid"), glPush, Summary{Duplicates: 1}},
		}, wantIDs: []string{"source/api/" + gitlabRevision}},
		{name: "gitlab without delivery id", path: gitlabPath, deliveries: []delivery{
			{edit(gitlabHeader("Push Hook"), "X-Gitlab-Event-Uuid", ""), glPush, Summary{Accepted: 1}},
			{edit(gitlabHeader("Push Hook"), "X-Gitlab-Event-Uuid", ""), glPush, Summary{Duplicates: 1}},
		}, wantIDs: []string{"source/api/" + gitlabRevision}},
		{name: "github tag without delivery id", path: githubPath, deliveries: []delivery{
			{edit(githubHeader("push", ghTag), "X-Github-Delivery", ""), ghTag, Summary{Accepted: 1}},
			{edit(githubHeader("push", ghTag), "X-Github-Delivery", ""), ghTag, Summary{Duplicates: 1}},
			{edit(githubHeader("push", ghTag2), "X-Github-Delivery", ""), ghTag2, Summary{Accepted: 1}},
		}, wantIDs: []string{"derived:github", "derived:github"}},
		{name: "generic same id", path: genericPath, deliveries: []delivery{
			{genericHeader(), genPush, Summary{Accepted: 1}},
			{genericHeader(), genPush, Summary{Duplicates: 1}},
		}, wantIDs: []string{"source/worker/" + genericRevision}},
		{name: "generic with another id, and without", path: genericPath, deliveries: []delivery{
			{genericHeader(), genPush, Summary{Accepted: 1}},
			{genericHeader(), setJSON(t, genPush, "id", "ci-run-8842"), Summary{Duplicates: 1}},
			{genericHeader(), setJSON(t, genPush, "id", nil), Summary{Duplicates: 1}},
		}, wantIDs: []string{"source/worker/" + genericRevision}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			for i, d := range tt.deliveries {
				got := h.post(t, tt.path, d.body, d.header)
				if got.status != http.StatusOK {
					t.Fatalf("delivery %d: got status %d (%s), want 200", i, got.status, got.body)
				}
				if diff := cmp.Diff(d.want, got.summary(t)); diff != "" {
					t.Errorf("delivery %d summary (-want +got):\n%s", i, diff)
				}
			}
			_, stored := h.pub.Snapshot()
			var ids []string
			source := strings.TrimPrefix(tt.path, "/v1/events/source/")
			for _, m := range stored {
				// An id derived from what the event says is "derived:<source>" in the table.
				if derivedSourceID.MatchString(m.MsgID) && strings.HasPrefix(m.MsgID, source+"-") {
					ids = append(ids, "derived:"+source)
					continue
				}
				ids = append(ids, m.MsgID)
			}
			if diff := cmp.Diff(tt.wantIDs, ids); diff != "" {
				t.Errorf("message ids stored (-want +got):\n%s", diff)
			}
			wantDups := len(tt.deliveries) - len(tt.wantIDs)
			if n := h.count(source, "push", "duplicate"); n != float64(wantDups) {
				t.Errorf("got promoter_events_received_total{%s,push,duplicate} = %v, want %d", source, n, wantDups)
			}
		})
	}
}

// TestSourcePublishFailure: a source push the bus did not take gets 503 and Retry-After.
func TestSourcePublishFailure(t *testing.T) {
	h := newHarness(t, allSecrets())
	h.pub.Fail(errBusDown)
	push := readTestdata(t, "source", "github-push.json")
	got := h.post(t, githubPath, push, githubHeader("push", push))
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" {
		t.Fatalf("got status %d Retry-After %q (%s), want 503 with Retry-After", got.status, got.header.Get("Retry-After"), got.body)
	}
	h.pub.Fail(nil)
	got = h.post(t, githubPath, push, githubHeader("push", push))
	if got.status != http.StatusOK || got.summary(t) != (Summary{Accepted: 1}) {
		t.Fatalf("retry: got status %d (%s), want 200 accepted", got.status, got.body)
	}
}

func TestNormaliseRepo(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://github.com/Acme/Web.git", "github.com/acme/web"},
		{"https://github.com/acme/web", "github.com/acme/web"},
		{"https://github.com/acme/web/", "github.com/acme/web"},
		{"http://git.example:8080/acme/web.git", "git.example:8080/acme/web"},
		{"ssh://git@github.com/acme/web.git", "github.com/acme/web"},
		{"ssh://git@git.example:2222/acme/web.git", "git.example/acme/web"},
		{"git://github.com/acme/web.git", "github.com/acme/web"},
		{"git@github.com:acme/web.git", "github.com/acme/web"},
		{"gitlab.example.com:acme/group/api.git", "gitlab.example.com/acme/group/api"},
		{"github.com/acme/web", "github.com/acme/web"},
		{"  https://github.com/acme/web.git\n", "github.com/acme/web"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := normaliseRepo(tt.in); got != tt.want {
			t.Errorf("normaliseRepo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMergeOnlyPipeline: a pipeline without a source is matched by no source webhook, of
// any provider and whatever the repository, while its registry pushes are kept as any
// pipeline's.
func TestMergeOnlyPipeline(t *testing.T) {
	web := testPipelines()[0]
	web.Source, web.Build = types.Source{}, types.BuildSpec{}
	h := newHarnessWith(t, []types.Pipeline{web}, allSecrets())

	ghPush := readTestdata(t, "source", "github-push.json")
	noRepo := setJSON(t, ghPush, "repository.clone_url", "", "repository.ssh_url", "", "repository.html_url", "", "repository.git_url", "")
	generic := setJSON(t, readTestdata(t, "source", "generic-push.json"), "repo", "https://github.com/acme/web.git", "ref", "main")
	for _, c := range []struct {
		name, path string
		header     http.Header
		body       []byte
	}{
		{"github push of the staging's repository", githubPath, githubHeader("push", ghPush), ghPush},
		{"github push without repository urls", githubPath, githubHeader("push", noRepo), noRepo},
		{"gitlab push", gitlabPath, gitlabHeader("Push Hook"), readTestdata(t, "source", "gitlab-push.json")},
		{"generic push", genericPath, genericHeader(), generic},
	} {
		got := h.post(t, c.path, c.body, c.header)
		if got.status != http.StatusOK || got.summary(t) != (Summary{Ignored: 1}) {
			t.Errorf("%s: got %d %s, want 200 ignored", c.name, got.status, got.body)
		}
	}
	if _, stored := h.pub.Snapshot(); len(stored) != 0 {
		t.Fatalf("stored %+v from source webhooks, want nothing", stored)
	}

	got := h.post(t, registryPath, readTestdata(t, "registry", "push-by-tag.json"), registryHeader())
	if got.status != http.StatusOK || got.summary(t) != (Summary{Accepted: 1}) {
		t.Fatalf("registry push: got %d %s, want 200 accepted", got.status, got.body)
	}
	_, stored := h.pub.Snapshot()
	if len(stored) != 1 {
		t.Fatalf("stored %d messages, want the registry push", len(stored))
	}
	if diff := cmp.Diff(capturedPush(), *stored[0].Value.(*types.RegistryPush)); diff != "" {
		t.Errorf("registry push (-want +got):\n%s", diff)
	}
}

// derivedSourceID is what deliveryID derives for a delivery without an id.
var derivedSourceID = regexp.MustCompile(`^[a-z]+-[0-9a-f]{24}$`)

func TestValidateReleaseTag(t *testing.T) {
	tests := []struct {
		tag     string
		wantErr error
	}{
		{"v1.2.3", nil},
		{"1.0", nil},
		{"v1.2.3-rc.1_b", nil},
		{"release/1.0", ErrInvalidReleaseTag},
		{"v1+build", ErrInvalidReleaseTag},
		{".hidden", ErrInvalidReleaseTag},
		{"-x", ErrInvalidReleaseTag},
		{strings.Repeat("v", 129), ErrInvalidReleaseTag},
		{"sha256-" + strings.Repeat("a", 64), ErrInvalidReleaseTag},
	}
	for _, tt := range tests {
		err := validateReleaseTag(tt.tag)
		if !errors.Is(err, tt.wantErr) || (err != nil && tt.wantErr == nil) {
			t.Errorf("validateReleaseTag(%q) = %v, want %v", tt.tag, err, tt.wantErr)
		}
	}
}
