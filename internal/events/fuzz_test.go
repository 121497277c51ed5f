package events

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// serveOnce runs one request through a fresh receiver without a network, and returns the
// recorder and what the publisher saw.
func serveOnce(t *testing.T, pub *bustest.Recorder, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	r, err := New(testPipelines(), allSecrets(), pub)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

func addTestdataSeeds(f *testing.F, dir string, add func(name string, b []byte)) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files in testdata/%s (%v)", dir, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		add(filepath.Base(file), b)
	}
}

// fuzzResult is what one request did to a fresh receiver: its answer, the publishes it
// attempted, and the messages the publisher stored.
type fuzzResult struct {
	rec    *httptest.ResponseRecorder
	calls  int
	stored []bustest.Message
}

// fuzzDeliver serves req (serveOnce) with pub as publisher.
func fuzzDeliver(t *testing.T, pub *bustest.Recorder, req *http.Request) fuzzResult {
	t.Helper()
	rec := serveOnce(t, pub, req)
	calls, stored := pub.Snapshot()
	return fuzzResult{rec: rec, calls: calls, stored: stored}
}

// summary decodes the Summary of a 200.
func (r fuzzResult) summary(t *testing.T) Summary {
	t.Helper()
	var sum Summary
	if err := json.Unmarshal(r.rec.Body.Bytes(), &sum); err != nil {
		t.Fatalf("200 with body %q: %v, want a Summary", r.rec.Body, err)
	}
	return sum
}

// fuzzCheck is one property of a stored message: ok, or the message fails for want.
type fuzzCheck struct {
	ok   bool
	want string
}

// checkStored fails on the first property of a message that does not hold, naming it.
func checkStored(t *testing.T, event string, got any, checks ...fuzzCheck) {
	t.Helper()
	for _, c := range checks {
		if !c.ok {
			t.Fatalf("event %q stored %+v, want %s", event, got, c.want)
		}
	}
}

// addRegistrySeeds adds FuzzRegistryWebhook's corpus: each testdata/registry body, with
// the publisher up and down, all their events in one envelope, and degenerate bodies.
func addRegistrySeeds(f *testing.F) {
	f.Helper()
	var events []map[string]any
	addTestdataSeeds(f, "registry", func(_ string, b []byte) {
		f.Add(b, false)
		f.Add(b, true)
		var env struct {
			Events []map[string]any `json:"events"`
		}
		if json.Unmarshal(b, &env) == nil {
			events = append(events, env.Events...)
		}
	})
	all := envelopeOf(f, events...)
	f.Add(all, false)
	f.Add(all, true)
	for _, s := range []string{``, `{}`, `{"events": []}`, `{"events": null}`, `{"events": [{}]}`, `{"events": []}}`, `[{"events": []}]`} {
		f.Add([]byte(s), false)
	}
}

// FuzzRegistryWebhook feeds arbitrary bodies, from an authenticated registry, to the
// registry receiver. It must never panic, answer 5xx only when the publisher failed, never
// publish from a body it does not answer 200, and account for every event it accepted.
func FuzzRegistryWebhook(f *testing.F) {
	addRegistrySeeds(f)
	pipelines := map[string]types.Pipeline{}
	for _, p := range testPipelines() {
		pipelines[p.Name] = p
	}

	f.Fuzz(func(t *testing.T, body []byte, failPublish bool) {
		pub := &bustest.Recorder{}
		if failPublish {
			pub.Fail(errBusDown)
		}
		req := httptest.NewRequest(http.MethodPost, registryPath, bytes.NewReader(body))
		req.Header = registryHeader()
		res := fuzzDeliver(t, pub, req)
		checkRegistryAnswer(t, res, body, failPublish)
		for _, m := range res.stored {
			checkStoredPush(t, pipelines, m)
		}
	})
}

// checkRegistryAnswer: the registry receiver answers 200, 400, or 503 (only when the
// publisher failed, with Retry-After); only a 200 stores, and a 400 does not even publish.
func checkRegistryAnswer(t *testing.T, res fuzzResult, body []byte, failPublish bool) {
	t.Helper()
	switch res.rec.Code {
	case http.StatusOK:
		checkRegistrySummary(t, res, body)
	case http.StatusBadRequest:
	case http.StatusServiceUnavailable:
		if !failPublish || res.calls == 0 {
			t.Fatalf("503 without a publisher failure (failing %v, %d publishes): %s", failPublish, res.calls, res.rec.Body)
		}
		if res.rec.Header().Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After, want one")
		}
	default:
		t.Fatalf("unexpected status %d, want 200, 400 or 503: %s", res.rec.Code, res.rec.Body)
	}
	if res.rec.Code != http.StatusOK && len(res.stored) != 0 {
		t.Fatalf("status %d, yet %d messages were stored, want none", res.rec.Code, len(res.stored))
	}
	if res.rec.Code == http.StatusBadRequest && res.calls != 0 {
		t.Fatalf("400, yet %d publishes were attempted, want none", res.calls)
	}
}

// checkRegistrySummary: a 200 is for a body encoding/json accepts, and its Summary
// accounts for every event of it, and for every publish and stored message.
func checkRegistrySummary(t *testing.T, res fuzzResult, body []byte) {
	t.Helper()
	sum := res.summary(t)
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("200 for a body encoding/json rejects (%v): %q", err, body)
	}
	if n := sum.Accepted + sum.Ignored + sum.Duplicates; n != len(env.Events) {
		t.Fatalf("summary %+v accounts for %d events, the body has %d", sum, n, len(env.Events))
	}
	if sum.Accepted+sum.Duplicates != res.calls || sum.Accepted != len(res.stored) {
		t.Fatalf("summary %+v, but %d publishes and %d stored", sum, res.calls, len(res.stored))
	}
}

// checkStoredPush: a stored push is of a configured pipeline, under its own id, with a
// valid digest and the tag its revision and platform render, never a signature's.
func checkStoredPush(t *testing.T, pipelines map[string]types.Pipeline, m bustest.Message) {
	t.Helper()
	p, ok := m.Value.(*types.RegistryPush)
	if !ok {
		t.Fatalf("stored a %T, want *types.RegistryPush", m.Value)
	}
	pl, ok := pipelines[p.Pipeline]
	if p.ID == "" || m.MsgID != p.ID || !ok {
		t.Fatalf("stored %+v with msg id %q, want an id, as msg id, of a configured pipeline", p, m.MsgID)
	}
	if err := digest.Digest(p.Digest).Validate(); err != nil {
		t.Fatalf("stored push with digest %q: %v", p.Digest, err)
	}
	if want := pl.ArchTag.Render(p.Revision, p.Platform); want != p.Tag {
		t.Fatalf("stored tag %q, but revision %q and %s render %q", p.Tag, p.Revision, p.Platform, want)
	}
	if registry.IsAccessoryTag(p.Tag) {
		t.Fatalf("stored signature tag %q, want an image tag", p.Tag)
	}
}

// addGitHubSeeds adds FuzzGitHubWebhook's corpus: each testdata/source body as push and
// ping, signed or not, as JSON or form-encoded, and a few edge cases.
func addGitHubSeeds(f *testing.F) {
	f.Helper()
	addTestdataSeeds(f, "source", func(name string, b []byte) {
		f.Add("push", b, true, false)
		f.Add("ping", b, true, false)
		f.Add("push", b, false, false)
		f.Add("push", githubForm(b), true, true)
		f.Add("push", githubForm(b), false, true)
	})
	f.Add("push", []byte(`{"ref": "refs/heads/main", "after": "0", "repository": {"clone_url": "github.com/acme/web"}}`), true, false)
	f.Add("issues", []byte(`{}`), true, false)
	f.Add("", []byte(`{}`), true, false)
	f.Add("push", []byte(`payload=%zz&payload=`), true, true)
}

// githubFuzzRequest is a delivery of event with body, as JSON or form-encoded, signed
// with the right secret or not signed at all.
func githubFuzzRequest(event string, body []byte, signed, form bool) *http.Request {
	req := httptest.NewRequest(http.MethodPost, githubPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if form {
		req.Header.Set("Content-Type", githubFormMediaType)
	}
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", githubDelivery)
	if signed {
		req.Header.Set("X-Hub-Signature-256", signGitHub(githubSecret, body))
	}
	return req
}

// FuzzGitHubWebhook feeds arbitrary events and bodies to the GitHub receiver, as JSON or
// form-encoded, signed with the right secret or not signed at all.
func FuzzGitHubWebhook(f *testing.F) {
	addGitHubSeeds(f)

	f.Fuzz(func(t *testing.T, event string, body []byte, signed, form bool) {
		res := fuzzDeliver(t, &bustest.Recorder{}, githubFuzzRequest(event, body, signed, form))
		checkGitHubAnswer(t, res, signed)
		for _, m := range res.stored {
			checkStoredSourceEvent(t, event, m)
		}
	})
}

// checkGitHubAnswer: an unsigned delivery is a 401; a signed one a 200 that accounts for
// the one delivery, a 400 or a 401; only a 200 publishes.
func checkGitHubAnswer(t *testing.T, res fuzzResult, signed bool) {
	t.Helper()
	switch code := res.rec.Code; {
	case !signed && code != http.StatusUnauthorized:
		t.Fatalf("unsigned body got %d, want 401: %s", code, res.rec.Body)
	case code == http.StatusOK:
		sum := res.summary(t)
		if sum.Accepted+sum.Ignored+sum.Duplicates != 1 || sum.Accepted != len(res.stored) || res.calls != len(res.stored) {
			t.Fatalf("summary %+v for one delivery, %d publishes, %d stored", sum, res.calls, len(res.stored))
		}
	case code == http.StatusBadRequest, code == http.StatusUnauthorized:
	default:
		t.Fatalf("unexpected status %d, want 200, 400 or 401: %s", code, res.rec.Body)
	}
	if res.rec.Code != http.StatusOK && res.calls != 0 {
		t.Fatalf("status %d, yet %d publishes, want none", res.rec.Code, res.calls)
	}
}

// checkStoredSourceEvent: a push stores web's main branch as SourceChanged and its v* tags
// as ReleaseTagged, under the delivery's id, at a valid, non-zero revision; nothing else.
func checkStoredSourceEvent(t *testing.T, event string, m bustest.Message) {
	t.Helper()
	switch ev := m.Value.(type) {
	case types.SourceChanged:
		checkStored(t, event, ev,
			fuzzCheck{event == "push", "a push event"},
			fuzzCheck{m.Subject == types.SubjectSourceChanged, "subject " + types.SubjectSourceChanged + ", not " + m.Subject},
			fuzzCheck{ev.Pipeline == "web", "pipeline web"},
			fuzzCheck{ev.Ref == "refs/heads/main", "ref refs/heads/main"},
			fuzzCheck{ev.ID == githubDelivery, "id " + githubDelivery},
			fuzzCheck{types.ValidateRevision(ev.Revision) == nil, "a valid revision"},
			fuzzCheck{!zeroRevision.MatchString(ev.Revision), "a non-zero revision"})
	case types.ReleaseTagged:
		checkStored(t, event, ev,
			fuzzCheck{event == "push", "a push event"},
			fuzzCheck{m.Subject == types.SubjectReleaseTagged, "subject " + types.SubjectReleaseTagged + ", not " + m.Subject},
			fuzzCheck{ev.Pipeline == "web", "pipeline web"},
			fuzzCheck{strings.HasPrefix(ev.Tag, "v"), "a tag starting with v"},
			fuzzCheck{ev.ID == githubDelivery, "id " + githubDelivery},
			fuzzCheck{validateReleaseTag(ev.Tag) == nil, "a valid release tag"},
			fuzzCheck{types.ValidateRevision(ev.Revision) == nil, "a valid revision"},
			fuzzCheck{!zeroRevision.MatchString(ev.Revision), "a non-zero revision"})
	default:
		t.Fatalf("stored a %T, want types.SourceChanged or types.ReleaseTagged", ev)
	}
}
