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

// FuzzRegistryWebhook feeds arbitrary bodies, from an authenticated registry, to the
// registry receiver. It must never panic, answer 5xx only when the publisher failed, never
// publish from a body it does not answer 200, and account for every event it accepted.
func FuzzRegistryWebhook(f *testing.F) {
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
		rec := serveOnce(t, pub, req)
		calls, stored := pub.Snapshot()

		switch rec.Code {
		case http.StatusOK:
			var sum Summary
			if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
				t.Fatalf("200 with body %q: %v", rec.Body, err)
			}
			var env envelope
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatalf("200 for a body encoding/json rejects (%v): %q", err, body)
			}
			if n := sum.Accepted + sum.Ignored + sum.Duplicates; n != len(env.Events) {
				t.Fatalf("summary %+v accounts for %d events, the body has %d", sum, n, len(env.Events))
			}
			if sum.Accepted+sum.Duplicates != calls || sum.Accepted != len(stored) {
				t.Fatalf("summary %+v, but %d publishes and %d stored", sum, calls, len(stored))
			}
		case http.StatusBadRequest:
		case http.StatusServiceUnavailable:
			if !failPublish || calls == 0 {
				t.Fatalf("503 without a publisher failure: %s", rec.Body)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && len(stored) != 0 {
			t.Fatalf("status %d, yet %d messages were stored", rec.Code, len(stored))
		}
		if rec.Code == http.StatusBadRequest && calls != 0 {
			t.Fatalf("400, yet %d publishes were attempted", calls)
		}
		for _, m := range stored {
			p := m.Value.(*types.RegistryPush)
			pl, ok := pipelines[p.Pipeline]
			if p.ID == "" || m.MsgID != p.ID || !ok {
				t.Fatalf("stored %+v with msg id %q", p, m.MsgID)
			}
			if err := digest.Digest(p.Digest).Validate(); err != nil {
				t.Fatalf("stored push with digest %q: %v", p.Digest, err)
			}
			if want := pl.ArchTag.Render(p.Revision, p.Platform); want != p.Tag {
				t.Fatalf("stored tag %q, but revision %q and %s render %q", p.Tag, p.Revision, p.Platform, want)
			}
			if registry.IsAccessoryTag(p.Tag) {
				t.Fatalf("stored signature tag %q", p.Tag)
			}
		}
	})
}

// FuzzGitHubWebhook feeds arbitrary events and bodies to the GitHub receiver, as JSON or
// form-encoded, signed with the right secret or not signed at all.
func FuzzGitHubWebhook(f *testing.F) {
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

	f.Fuzz(func(t *testing.T, event string, body []byte, signed, form bool) {
		pub := &bustest.Recorder{}
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
		rec := serveOnce(t, pub, req)
		calls, stored := pub.Snapshot()

		switch {
		case !signed && rec.Code != http.StatusUnauthorized:
			t.Fatalf("unsigned body got %d, want 401: %s", rec.Code, rec.Body)
		case rec.Code == http.StatusOK:
			var sum Summary
			if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
				t.Fatalf("200 with body %q: %v", rec.Body, err)
			}
			if sum.Accepted+sum.Ignored+sum.Duplicates != 1 || sum.Accepted != len(stored) || calls != len(stored) {
				t.Fatalf("summary %+v for one delivery, %d publishes, %d stored", sum, calls, len(stored))
			}
		case rec.Code == http.StatusBadRequest, rec.Code == http.StatusUnauthorized:
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && calls != 0 {
			t.Fatalf("status %d, yet %d publishes", rec.Code, calls)
		}
		for _, m := range stored {
			switch ev := m.Value.(type) {
			case types.SourceChanged:
				if event != "push" || m.Subject != types.SubjectSourceChanged || ev.Pipeline != "web" || ev.Ref != "refs/heads/main" || ev.ID != githubDelivery ||
					types.ValidateRevision(ev.Revision) != nil || zeroRevision.MatchString(ev.Revision) {
					t.Fatalf("event %q stored %+v", event, ev)
				}
			case types.ReleaseTagged:
				if event != "push" || m.Subject != types.SubjectReleaseTagged || ev.Pipeline != "web" || !strings.HasPrefix(ev.Tag, "v") || ev.ID != githubDelivery ||
					validateReleaseTag(ev.Tag) != nil || types.ValidateRevision(ev.Revision) != nil || zeroRevision.MatchString(ev.Revision) {
					t.Fatalf("event %q stored %+v", event, ev)
				}
			default:
				t.Fatalf("stored a %T", ev)
			}
		}
	})
}
