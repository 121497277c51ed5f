package events

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// Credentials the tests configure; the captured registry bodies carry no token of their own.
const (
	registryToken    = "registry-s3cret"
	harborToken      = "harbor-s3cret"
	cloudEventsToken = "cloudevents-s3cret"
	acrToken         = "acr-s3cret"
	garToken         = "gar-s3cret"
	ecrToken         = "ecr-s3cret"
	quayToken        = "quay-s3cret"
	githubSecret     = "github-s3cret"
	gitlabToken      = "gitlab-s3cret"
	genericToken     = "generic-s3cret"
)

// testNow is the receiver's clock in tests, so SourceChanged.Received is predictable.
var testNow = time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)

// testPipelines follow the repositories of the captured registry bodies (acme/web on the
// staging registry), of the Artifact Registry fixture (acme-prod/containers/web) and of
// the source samples in testdata/source.
func testPipelines() []types.Pipeline {
	return []types.Pipeline{
		{
			Name:      "web",
			Source:    types.Source{Repo: "https://github.com/acme/web.git", Branch: "main", ReleaseTags: types.ReleaseTags{"v*"}},
			Platforms: platforms("linux/amd64", "linux/arm64"),
			Staging:   "staging.example:5000/acme/web",
			ArchTag:   "{revision}-{arch}",
			Build:     types.BuildSpec{Cache: types.DefaultCacheRef, CacheMode: "max"},
		},
		{
			Name:      "api",
			Source:    types.Source{Repo: "git@gitlab.example.com:acme/api.git", Branch: "main", ReleaseTags: types.ReleaseTags{"v*"}},
			Platforms: platforms("linux/amd64", "linux/arm/v7"),
			Staging:   "staging.example:5000/acme/api",
			ArchTag:   "{revision}-{os}-{arch}{variant}",
		},
		{
			Name:      "images",
			Platforms: platforms("linux/amd64", "linux/arm64"),
			Staging:   "europe-west1-docker.pkg.dev/acme-prod/containers/web",
			ArchTag:   "{revision}-{arch}",
		},
		{
			Name:      "worker",
			Source:    types.Source{Repo: "git.example/acme/worker", Branch: "release", ReleaseTags: types.ReleaseTags{"v3.*"}},
			Platforms: platforms("linux/amd64"),
			Staging:   "staging.example:5000/acme/worker",
			ArchTag:   "{revision}-{arch}",
		},
	}
}

func platforms(ps ...string) []types.Platform {
	out := make([]types.Platform, len(ps))
	for i, p := range ps {
		out[i] = types.MustPlatform(p)
	}
	return out
}

func allSecrets() Secrets {
	return Secrets{"registry": registryToken, "github": githubSecret, "gitlab": gitlabToken, "generic": genericToken,
		"harbor": harborToken, "cloudevents": cloudEventsToken,
		"acr": acrToken, "gar": garToken, "ecr": ecrToken, "quay": quayToken}
}

var errBusDown = errors.New("nats: no responders available for request")

// harness is a receiver behind a real HTTP server, with its own metrics registry.
type harness struct {
	srv     *httptest.Server
	pub     *bustest.Recorder
	metrics *metrics.Metrics
}

func newHarness(t *testing.T, secrets Secrets, opts ...Option) *harness {
	t.Helper()
	return newHarnessWith(t, testPipelines(), secrets, opts...)
}

func newHarnessWith(t *testing.T, pipelines []types.Pipeline, secrets Secrets, opts ...Option) *harness {
	t.Helper()
	h := &harness{pub: &bustest.Recorder{}, metrics: metrics.New(prometheus.NewRegistry())}
	opts = append([]Option{WithMetrics(h.metrics), WithClock(func() time.Time { return testNow })}, opts...)
	r, err := New(pipelines, secrets, h.pub, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	r.Register(mux)
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// reply is an HTTP answer read in full.
type reply struct {
	status int
	header http.Header
	body   string
	// closed is set when the server closes the connection after this answer.
	closed bool
}

func (r reply) summary(t *testing.T) Summary {
	t.Helper()
	var s Summary
	dec := json.NewDecoder(bytes.NewReader([]byte(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decoding summary %q: %v", r.body, err)
	}
	return s
}

// errorMessage is the "error" field of a rejection body.
func (r reply) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("status %d body %q is not {\"error\": ...}", r.status, r.body)
	}
	return e.Error
}

func (h *harness) post(t testing.TB, path string, body []byte, header http.Header) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading reply of POST %s: %v", path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b), closed: resp.Close}
}

// count reads promoter_events_received_total{source,action,outcome}, whatever the reason.
func (h *harness) count(source, action, outcome string) float64 {
	return h.countReason(source, action, outcome, "")
}

// countReason reads promoter_events_received_total{source,action,outcome,reason}; reason
// "" sums every reason.
func (h *harness) countReason(source, action, outcome, reason string) float64 {
	families, err := h.metrics.Registry.Gather()
	if err != nil {
		panic(err)
	}
	want := map[string]string{"source": source, "action": action, "outcome": outcome, "reason": reason}
	var n float64
	for _, f := range families {
		if f.GetName() != "promoter_events_received_total" {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if w, ok := want[l.GetName()]; ok && w != "" && w != l.GetValue() {
					continue metrics
				}
			}
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

// logBuffer collects a receiver's log lines; the server writes them from its goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines are the lines logged so far.
func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

// logTo is a logger at info that writes to a new logBuffer.
func logTo() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

// registryHeader is what a distribution endpoint configured with our token sends.
func registryHeader() http.Header {
	return http.Header{
		"Authorization": {"Bearer " + registryToken},
		"Content-Type":  {EnvelopeMediaType},
	}
}

func readTestdata(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// capturedEvent is the first event of testdata/registry/<name>, as a generic map so a test
// can change one field of a real notification.
func capturedEvent(t testing.TB, name string) map[string]any {
	t.Helper()
	var env struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(readTestdata(t, "registry", name), &env); err != nil || len(env.Events) == 0 {
		t.Fatalf("testdata/registry/%s: no events (%v)", name, err)
	}
	return env.Events[0]
}

// envelope builds a notification body from events.
func envelopeOf(t testing.TB, events ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// with returns a deep copy of event with the fields at the dotted paths set ("target.tag").
// A nil value deletes the field.
func with(t testing.TB, event map[string]any, kv ...any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(event)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		path := kv[i].(string)
		m := out
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		if kv[i+1] == nil {
			delete(m, keys[len(keys)-1])
		} else {
			m[keys[len(keys)-1]] = kv[i+1]
		}
	}
	return out
}

// signGitHub is the X-Hub-Signature-256 value GitHub sends for body.
func signGitHub(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// setJSON returns body (a JSON object) with top-level fields replaced.
func setJSON(t testing.TB, body []byte, kv ...any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m = with(t, m, kv...)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
