package events

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// TestIgnoredEventsExplained: every event acknowledged without being kept is counted by
// its reason (promoter_events_received_total{outcome="ignored",reason}) and logged at info
// with it, so that a 2xx after which nothing happened can be explained.
func TestIgnoredEventsExplained(t *testing.T) {
	base := capturedEvent(t, "push-by-tag.json")
	registry := func(kv ...any) []byte { return envelopeOf(t, with(t, base, kv...)) }
	ce := http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + cloudEventsToken}}
	harbor := http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}}
	ecr := jsonHeader("Bearer " + ecrToken)
	tests := []struct {
		name, path, source string
		body               []byte
		header             http.Header
		action, reason     string
	}{
		{"a pull", registryPath, "registry", registry("action", "pull"), registryHeader(), "pull", "not_a_push"},
		{"a blob", registryPath, "registry", registry("target.mediaType", "application/octet-stream"), registryHeader(), "push", "not_a_manifest"},
		{"a push by digest", registryPath, "registry", registry("target.tag", nil), registryHeader(), "push", "no_tag"},
		{"a signature", registryPath, "registry", registry("target.tag", "sha256-"+strings.Repeat("a", 64)+".sig"), registryHeader(), "push", "signature_tag"},
		{"another repository", registryPath, "registry", registry("target.repository", "acme/other"), registryHeader(), "push", "no_pipeline"},
		{"the build cache", registryPath, "registry", registry("target.tag", "buildcache-linux-amd64"), registryHeader(), "push", "cache_tag"},
		{"a tag that is no arch tag", registryPath, "registry", registry("target.tag", "latest"), registryHeader(), "push", "not_arch_tag"},
		{"an arch tag with an invalid revision", registryPath, "registry", registry("target.tag", "a..b-amd64"), registryHeader(), "push", "invalid_revision"},
		{"a Harbor type promoter does not know", "/v1/events/registry/harbor", "harbor",
			setJSON(t, readTestdata(t, "harbor", "push-default.json"), "type", "ARTIFACT_TELEPORTED"), harbor, "other", "unknown_type"},
		{"a CloudEvent type promoter does not know", "/v1/events/registry/cloudevents", "cloudevents",
			[]byte(`{"specversion":"1.0","id":"1","source":"s","type":"io.example.pushed","data":{}}`), ce, "other", "unknown_type"},
		{"a failed ECR push", "/v1/events/registry/ecr", "ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "detail.result", "FAILURE"), ecr, "push", "push_failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, lines := logTo()
			h := newHarness(t, allSecrets(), WithLogger(log))
			r := h.post(t, tc.path, tc.body, tc.header)
			if r.status != http.StatusOK || r.summary(t).Ignored != 1 {
				t.Fatalf("got %d %s, want 200 with 1 ignored", r.status, r.body)
			}
			if !contains(IgnoreReasons(), tc.reason) {
				t.Errorf("reason %q is not in IgnoreReasons()", tc.reason)
			}
			outcome := "ignored"
			if tc.reason == "invalid_revision" {
				outcome = "invalid"
			}
			if n := h.countReason(tc.source, tc.action, outcome, tc.reason); n != 1 {
				t.Errorf(`promoter_events_received_total{source=%q,action=%q,outcome=%q,reason=%q} = %v, want 1`, tc.source, tc.action, outcome, tc.reason, n)
			}
			found := false
			for _, l := range lines.lines() {
				if strings.Contains(l, "level=INFO") || strings.Contains(l, "level=WARN") {
					found = found || strings.Contains(l, "reason="+tc.reason)
				}
			}
			if !found {
				t.Errorf("no info line with reason=%s in\n%s", tc.reason, strings.Join(lines.lines(), "\n"))
			}
		})
	}
}

// TestIgnoredEventsLogRateLimited: a registry that floods the receiver with ignored
// events gets a bounded number of log lines, and one more that says how many were not
// logged; every event is still counted.
func TestIgnoredEventsLogRateLimited(t *testing.T) {
	base := capturedEvent(t, "push-by-tag.json")
	var events []map[string]any
	for i := range 500 {
		events = append(events, with(t, base, "action", "pull", "id", fmt.Sprint(i)))
	}
	var now atomic.Int64 // seconds after testNow
	log, lines := logTo()
	h := newHarness(t, allSecrets(), WithLogger(log), WithClock(func() time.Time { return testNow.Add(time.Duration(now.Load()) * time.Second) }))
	if r := h.post(t, registryPath, envelopeOf(t, events...), registryHeader()); r.status != http.StatusOK {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if n := h.countReason("registry", "pull", "ignored", "not_a_push"); n != 500 {
		t.Errorf("counted %v ignored pulls, want 500", n)
	}
	var ignored int
	for _, l := range lines.lines() {
		if strings.Contains(l, "reason=not_a_push") {
			ignored++
		}
	}
	if ignored != ignoredLogBurst {
		t.Errorf("logged %d ignored events, want %d", ignored, ignoredLogBurst)
	}
	// A window later, the first line says how many were left out.
	now.Store(int64(ignoredLogWindow / time.Second))
	if r := h.post(t, registryPath, envelopeOf(t, events[0]), registryHeader()); r.status != http.StatusOK {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	if l := strings.Join(lines.lines(), "\n"); !strings.Contains(l, fmt.Sprintf("dropped=%d", 500-ignoredLogBurst)) {
		t.Errorf("no line saying %d were not logged in\n%s", 500-ignoredLogBurst, l)
	}
}

// TestStagingHostsPerFormat: hosts are read from URL-shaped fields whatever their form
// (a scheme, a /v2/ prefix), ECR's from its account and region; when the path alone is
// known and pipelines share it, the push is ignored as ambiguous rather than guessed.
func TestStagingHostsPerFormat(t *testing.T) {
	pipeline := func(name, staging string) types.Pipeline {
		return types.Pipeline{Name: name, Staging: types.Repository(staging), Platforms: platforms("linux/amd64", "linux/arm64"), ArchTag: types.DefaultArchTag}
	}
	quayPipelines := []types.Pipeline{pipeline("quay", "quay.io/acme/web"), pipeline("mirror", "registry.example/acme/web")}
	ecrPipelines := []types.Pipeline{
		pipeline("oregon", "123456789012.dkr.ecr.us-west-2.amazonaws.com/acme/web"),
		pipeline("ireland", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/web"),
	}
	zot := withAuth(headersOf(t, "cloudevents", "zot-image-updated.headers.json"), "Bearer "+cloudEventsToken)
	ecr := jsonHeader("Bearer " + ecrToken)
	tests := []struct {
		name      string
		pipelines []types.Pipeline
		path      string
		body      []byte
		header    http.Header
		want      string // pipeline; "" ignored
		reason    string // when ignored
	}{
		{"Quay, docker_url with https://", quayPipelines, "/v1/events/registry/quay?token=" + quayToken,
			readTestdata(t, "quay", "push-https-docker-url.json"), http.Header{"Content-Type": {"application/json"}}, "quay", ""},
		{"Quay, docker_url with a /v2/ path", quayPipelines, "/v1/events/registry/quay?token=" + quayToken,
			setJSON(t, readTestdata(t, "quay", "push.json"), "docker_url", "https://registry.example/v2/acme/web"), http.Header{"Content-Type": {"application/json"}}, "mirror", ""},
		{"Harbor, resource_url with https://", quayPipelines, "/v1/events/registry/harbor",
			[]byte(`{"type":"PUSH_ARTIFACT","occur_at":1,"event_data":{"resources":[{"tag":"abc123-amd64","resource_url":"https://registry.example/acme/web:abc123-amd64"}],"repository":{"repo_full_name":"acme/web"}}}`),
			http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}}, "mirror", ""},
		{"ECR, the account and region name the host", ecrPipelines, "/v1/events/registry/ecr", readTestdata(t, "ecr", "push.json"), ecr, "oregon", ""},
		{"ECR, another region", ecrPipelines, "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "region", "eu-west-1"), ecr, "ireland", ""},
		{"ECR, a region no pipeline stages to", ecrPipelines, "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "region", "ap-south-1"), ecr, "", "other_registry"},
		{"ECR, another account's registry", ecrPipelines[:1], "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "account", "210987654321"), ecr, "", "other_registry"},
		{"Zot names no host: two pipelines share the path", quayPipelines, "/v1/events/registry/cloudevents",
			readTestdata(t, "cloudevents", "zot-image-updated.json"), zot, "", "ambiguous_pipeline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, lines := logTo()
			h := newHarnessWith(t, tc.pipelines, allSecrets(), WithLogger(log))
			r := h.post(t, tc.path, tc.body, tc.header)
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			_, stored := h.pub.Snapshot()
			got := ""
			if len(stored) == 1 {
				got = stored[0].Value.(*types.RegistryPush).Pipeline
			}
			if got != tc.want {
				t.Fatalf("got pipeline %q, want %q", got, tc.want)
			}
			if tc.reason == "" {
				return
			}
			if n := h.countReason("", "push", "ignored", tc.reason); n != 1 {
				t.Errorf("promoter_events_received_total{outcome=ignored,reason=%q} = %v, want 1", tc.reason, n)
			}
			if l := strings.Join(lines.lines(), "\n"); !strings.Contains(l, "reason="+tc.reason) {
				t.Errorf("no log line with reason=%s in\n%s", tc.reason, l)
			}
		})
	}
}

// TestImageReferences: URL-shaped host fields lose their scheme and /v2/ prefix.
func TestImageReferences(t *testing.T) {
	tests := []struct {
		ref, host, repo, tagOrDigest string
	}{
		{"quay.io/acme/web", "quay.io", "acme/web", ""},
		{"https://quay.io/acme/web", "quay.io", "acme/web", ""},
		{"http://staging.example:5000/acme/web:abc123-amd64", "staging.example:5000", "acme/web", "abc123-amd64"},
		{"https://staging.example:5000/v2/acme/web:abc123-amd64", "staging.example:5000", "acme/web", "abc123-amd64"},
		{"localhost/v2/acme/web@sha256:abc", "localhost", "acme/web", "sha256:abc"},
		{"acme/web:abc123-amd64", "", "acme/web", "abc123-amd64"},
		{"https://", "", "", ""},
	}
	for _, tc := range tests {
		host, repo, tagOrDigest := splitReference(tc.ref)
		if host != tc.host || repo != tc.repo || tagOrDigest != tc.tagOrDigest {
			t.Errorf("splitReference(%q) = %q, %q, %q; want %q, %q, %q", tc.ref, host, repo, tagOrDigest, tc.host, tc.repo, tc.tagOrDigest)
		}
		if got := urlHost(tc.ref); got != tc.host {
			t.Errorf("urlHost(%q) = %q, want %q", tc.ref, got, tc.host)
		}
	}
}
