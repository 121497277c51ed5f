package events

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/types"
)

const registryPath = "/v1/events/registry"

// The kept event of testdata/registry/push-by-tag.json.
const (
	capturedPushID     = "01a20694-82a0-7e6f-a31a-5cfd7e8ecf96"
	capturedPushDigest = "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e"
)

func capturedPush() types.RegistryPush {
	return types.RegistryPush{
		ID:        capturedPushID,
		Pipeline:  "web",
		Revision:  "abc123",
		Platform:  types.MustPlatform("linux/amd64"),
		Tag:       "abc123-amd64",
		Digest:    capturedPushDigest,
		MediaType: "application/vnd.docker.distribution.manifest.v2+json",
		Timestamp: time.Date(2026, 11, 23, 4, 5, 25, 792946351, time.UTC),
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		pub     bus.Publisher
		secrets Secrets
		opts    []Option
		wantErr error
	}{
		{name: "zero body limit", pub: &bustest.Recorder{}, opts: []Option{WithMaxBodyBytes(0)}, wantErr: ErrInvalidOption},
		{name: "negative body limit", pub: &bustest.Recorder{}, opts: []Option{WithMaxBodyBytes(-1)}, wantErr: ErrInvalidOption},
		{name: "no publisher", pub: nil, wantErr: ErrNoPublisher},
		// A misspelt receiver would stay disabled, silently.
		{name: "a secret of no receiver", pub: &bustest.Recorder{}, secrets: Secrets{"harbour": "t"}, wantErr: ErrUnknownReceiver},
		{name: "defaults", pub: &bustest.Recorder{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := allSecrets()
			for k, v := range tt.secrets {
				secrets[k] = v
			}
			_, err := New(testPipelines(), secrets, tt.pub, tt.opts...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRegistryAuth(t *testing.T) {
	body := readTestdata(t, "registry", "push-by-tag.json")
	tests := []struct {
		name       string
		secrets    Secrets
		insecure   bool   // WithInsecureNoAuth
		auth       string // Authorization header; empty sends none
		wantStatus int
		wantErr    string // part of the error message of a rejection
	}{
		{name: "no header", secrets: allSecrets(), wantStatus: 401, wantErr: "auth.registryToken"},
		{name: "wrong token", secrets: allSecrets(), auth: "Bearer nope", wantStatus: 401, wantErr: "wrong bearer token"},
		{name: "token prefix", secrets: allSecrets(), auth: "Bearer " + registryToken[:len(registryToken)-1], wantStatus: 401, wantErr: "wrong bearer token"},
		{name: "token with suffix", secrets: allSecrets(), auth: "Bearer " + registryToken + "x", wantStatus: 401, wantErr: "wrong bearer token"},
		{name: "basic scheme", secrets: allSecrets(), auth: "Basic cmVnaXN0cnk6czNjcmV0", wantStatus: 401, wantErr: "not a Bearer token"},
		{name: "token without scheme", secrets: allSecrets(), auth: registryToken, wantStatus: 401, wantErr: "not a Bearer token"},
		{name: "empty bearer", secrets: allSecrets(), auth: "Bearer ", wantStatus: 401, wantErr: "wrong bearer token"},
		{name: "right token", secrets: allSecrets(), auth: "Bearer " + registryToken, wantStatus: 200},
		// RFC 9110 §11.1: the scheme is case-insensitive; registries send what the endpoint's headers say.
		{name: "lower-case scheme", secrets: allSecrets(), auth: "bearer " + registryToken, wantStatus: 200},
		{name: "disabled", secrets: Secrets{}, auth: "Bearer " + registryToken, wantStatus: 401, wantErr: "set auth.registryToken"},
		{name: "insecure without token", secrets: Secrets{}, insecure: true, wantStatus: 200},
		{name: "insecure with token still checks it", secrets: Secrets{"registry": registryToken}, insecure: true, auth: "Bearer nope", wantStatus: 401, wantErr: "wrong bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.secrets, WithInsecureNoAuth(tt.insecure))
			hdr := http.Header{"Content-Type": {EnvelopeMediaType}}
			if tt.auth != "" {
				hdr.Set("Authorization", tt.auth)
			}
			got := h.post(t, registryPath, body, hdr)
			if got.status != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", got.status, got.body, tt.wantStatus)
			}
			calls, stored := h.pub.Snapshot()
			if tt.wantStatus != 200 {
				if msg := got.errorMessage(t); !strings.Contains(msg, tt.wantErr) {
					t.Errorf("got error %q, want it to contain %q", msg, tt.wantErr)
				}
				if strings.Contains(got.body, registryToken) {
					t.Errorf("the reply %q echoes the configured token", got.body)
				}
				if calls != 0 {
					t.Errorf("got %d publishes for a rejected request, want 0", calls)
				}
				if n := h.count("registry", "unknown", "rejected"); n != 1 {
					t.Errorf("got rejected count %v, want 1", n)
				}
				return
			}
			if len(stored) != 1 || stored[0].MsgID != capturedPushID {
				t.Errorf("got stored %+v, want the captured push %s", stored, capturedPushID)
			}
		})
	}
}

func TestRegistryContentType(t *testing.T) {
	body := readTestdata(t, "registry", "push-by-tag.json")
	tests := []struct {
		contentType string // empty sends none
		wantStatus  int
	}{
		{EnvelopeMediaType, 200},
		{"application/json", 200},
		{"application/json; charset=utf-8", 200},
		{EnvelopeMediaType + "; charset=UTF-8", 200},
		{"Application/JSON", 200},
		{"text/plain", 415},
		{"text/plain; charset=utf-8", 415},
		{"application/x-www-form-urlencoded", 415},
		{"application/vnd.docker.distribution.events.v1+json", 415},
		{"", 415},
		{"application/json; charset", 415}, // unparsable parameters
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.contentType), func(t *testing.T) {
			h := newHarness(t, allSecrets())
			hdr := http.Header{"Authorization": {"Bearer " + registryToken}}
			if tt.contentType != "" {
				hdr.Set("Content-Type", tt.contentType)
			}
			got := h.post(t, registryPath, body, hdr)
			if got.status != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", got.status, got.body, tt.wantStatus)
			}
			calls, _ := h.pub.Snapshot()
			if tt.wantStatus == 415 {
				msg := got.errorMessage(t)
				if !strings.Contains(msg, EnvelopeMediaType) || !strings.Contains(msg, "application/json") {
					t.Errorf("got error %q, want it to name both accepted types", msg)
				}
				if calls != 0 {
					t.Errorf("got %d publishes, want 0", calls)
				}
			} else if calls != 1 {
				t.Errorf("got %d publishes, want 1", calls)
			}
		})
	}
}

func TestRegistryBodyLimit(t *testing.T) {
	body := readTestdata(t, "registry", "push-by-tag.json")
	tests := []struct {
		name       string
		limit      int64
		wantStatus int
	}{
		{name: "one byte over", limit: int64(len(body)) - 1, wantStatus: 413},
		{name: "far over", limit: 64, wantStatus: 413},
		{name: "exactly the limit", limit: int64(len(body)), wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets(), WithMaxBodyBytes(tt.limit))
			got := h.post(t, registryPath, body, registryHeader())
			if got.status != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", got.status, got.body, tt.wantStatus)
			}
			calls, _ := h.pub.Snapshot()
			if tt.wantStatus == 413 {
				if msg := got.errorMessage(t); !strings.Contains(msg, "events.maxBodyBytes") || !strings.Contains(msg, fmt.Sprint(tt.limit)) {
					t.Errorf("got error %q, want the limit %d and its config key events.maxBodyBytes", msg, tt.limit)
				}
				if calls != 0 {
					t.Errorf("got %d publishes for a body over the limit, want 0", calls)
				}
			} else if calls != 1 {
				t.Errorf("got %d publishes, want 1", calls)
			}
		})
	}
}

func TestRegistryDefaultBodyLimitIsOneMiB(t *testing.T) {
	h := newHarness(t, allSecrets())
	// A valid envelope padded with whitespace to just over 1 MiB.
	body := []byte(`{"events": []}` + strings.Repeat(" ", 1<<20))
	got := h.post(t, registryPath, body, registryHeader())
	if got.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got status %d for %d bytes, want 413", got.status, len(body))
	}
	got = h.post(t, registryPath, body[:1<<20], registryHeader())
	if got.status != http.StatusOK {
		t.Fatalf("got status %d (%s) for exactly 1 MiB, want 200", got.status, got.body)
	}
}

func TestRegistryMalformed(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{name: "not json", body: "registry says hi", wantErr: "invalid character 'r'"},
		{name: "empty body", body: "", wantErr: "EOF"},
		{name: "truncated", body: `{"events": [{"id": "x", "action": "push"`, wantErr: "unexpected EOF"},
		{name: "top-level array", body: `[]`, wantErr: "cannot unmarshal array"},
		{name: "no events array", body: `{}`, wantErr: `no "events" array`},
		{name: "null events", body: `{"events": null}`, wantErr: `no "events" array`},
		{name: "events not an array", body: `{"events": {}}`, wantErr: "cannot unmarshal object"},
		{name: "event not an object", body: `{"events": [42]}`, wantErr: "cannot unmarshal number"},
		{name: "bad timestamp", body: `{"events": [{"id": "x", "timestamp": "yesterday"}]}`, wantErr: "yesterday"},
		{name: "second document", body: `{"events": []} {"events": []}`, wantErr: "after"},
		{name: "trailing brace", body: `{"events": []}}`, wantErr: "after"},
		{name: "trailing bracket", body: `{"events": []}]`, wantErr: "after"},
		{name: "trailing garbage", body: `{"events": []}garbage`, wantErr: "after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			got := h.post(t, registryPath, []byte(tt.body), registryHeader())
			if got.status != http.StatusBadRequest {
				t.Fatalf("got status %d (%s), want 400", got.status, got.body)
			}
			msg := got.errorMessage(t)
			if !strings.HasPrefix(msg, "decoding notification envelope: ") || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("got error %q, want the decode error containing %q", msg, tt.wantErr)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("got %d publishes for a malformed body, want 0", calls)
			}
		})
	}
}

// TestRegistryNothingPartial sends a valid, kept push followed by an invalid event: the
// whole body is rejected and not even the first push is published.
func TestRegistryNothingPartial(t *testing.T) {
	first := capturedEvent(t, "push-by-tag.json")
	arm := with(t, first, "id", "second-event", "target.tag", "abc123-arm64")
	tests := []struct {
		name    string
		second  map[string]any
		wantErr string
	}{
		{name: "kept push without id", second: with(t, arm, "id", nil), wantErr: "events[1]: push of acme/web:abc123-arm64 has no event id"},
		{name: "kept push with a bad digest", second: with(t, arm, "target.digest", "sha256:nothex"), wantErr: `events[1]: push of acme/web:abc123-arm64: digest "sha256:nothex"`},
		{name: "kept push without digest", second: with(t, arm, "target.digest", nil), wantErr: "events[1]: push of acme/web:abc123-arm64: digest"},
		{name: "target of the wrong type", second: with(t, arm, "target", "acme/web"), wantErr: "decoding notification envelope"},
		{name: "size of the wrong type", second: with(t, arm, "target.size", "big"), wantErr: "decoding notification envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			got := h.post(t, registryPath, envelopeOf(t, first, tt.second), registryHeader())
			if got.status != http.StatusBadRequest {
				t.Fatalf("got status %d (%s), want 400", got.status, got.body)
			}
			if msg := got.errorMessage(t); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("got error %q, want it to contain %q", msg, tt.wantErr)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("got %d publishes, want 0: the valid first event must not be kept from a rejected body", calls)
			}
			if n := h.count("registry", "push", "kept"); n != 0 {
				t.Errorf("got kept count %v, want 0", n)
			}
		})
	}
}

// TestRegistryCapturedBodies runs every notification captured from a real registry
// (capture_test.go) through the receiver.
func TestRegistryCapturedBodies(t *testing.T) {
	tests := []struct {
		file       string
		action     string
		want       Summary
		wantStored []types.RegistryPush
	}{
		{file: "push-by-tag.json", action: "push", want: Summary{Accepted: 1}, wantStored: []types.RegistryPush{capturedPush()}},
		// Builders push by digest first; only the tag push names a platform and revision.
		{file: "push-by-digest.json", action: "push", want: Summary{Ignored: 1}},
		// abc123 is the merged index (merge's output), not an arch tag: keeping it would loop.
		{file: "push-index.json", action: "push", want: Summary{Ignored: 1}},
		{file: "blob-push.json", action: "push", want: Summary{Ignored: 1}},
		{file: "pull.json", action: "pull", want: Summary{Ignored: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			got := h.post(t, registryPath, readTestdata(t, "registry", tt.file), registryHeader())
			if got.status != http.StatusOK {
				t.Fatalf("got status %d (%s), want 200", got.status, got.body)
			}
			if diff := cmp.Diff(tt.want, got.summary(t)); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			_, stored := h.pub.Snapshot()
			var pushes []types.RegistryPush
			for _, m := range stored {
				p := m.Value.(*types.RegistryPush)
				if m.Subject != types.SubjectRegistryPush || m.MsgID != p.ID {
					t.Errorf("published %s with msg id %s, want subject %s and msg id = event id %s", m.Subject, m.MsgID, types.SubjectRegistryPush, p.ID)
				}
				pushes = append(pushes, *p)
			}
			if diff := cmp.Diff(tt.wantStored, pushes); diff != "" {
				t.Errorf("published (-want +got):\n%s", diff)
			}
			outcome := "ignored"
			if tt.want.Accepted > 0 {
				outcome = "kept"
			}
			if n := h.count("registry", tt.action, outcome); n != 1 {
				t.Errorf("got promoter_events_received_total{registry,%s,%s} = %v, want 1", tt.action, outcome, n)
			}
		})
	}
}

// TestRegistryFilter changes one field of the captured push by tag at a time.
func TestRegistryFilter(t *testing.T) {
	base := capturedEvent(t, "push-by-tag.json")
	sigTag := "sha256-" + strings.TrimPrefix(capturedPushDigest, "sha256:")
	tests := []struct {
		name       string
		event      map[string]any
		wantAction string
		wantKept   *types.RegistryPush
	}{
		{name: "captured", event: base, wantAction: "push", wantKept: ptr(capturedPush())},
		{name: "other platform of the pipeline", event: with(t, base, "target.tag", "abc123-arm64"), wantAction: "push",
			wantKept: ptr(func() types.RegistryPush {
				p := capturedPush()
				p.Platform, p.Tag = types.MustPlatform("linux/arm64"), "abc123-arm64"
				return p
			}())},
		{name: "oci manifest", event: with(t, base, "target.mediaType", "application/vnd.oci.image.manifest.v1+json"), wantAction: "push",
			wantKept: ptr(func() types.RegistryPush {
				p := capturedPush()
				p.MediaType = "application/vnd.oci.image.manifest.v1+json"
				return p
			}())},
		// BuildKit pushes an index per platform when it attaches provenance.
		{name: "per-arch oci index", event: with(t, base, "target.mediaType", "application/vnd.oci.image.index.v1+json"), wantAction: "push",
			wantKept: ptr(func() types.RegistryPush {
				p := capturedPush()
				p.MediaType = "application/vnd.oci.image.index.v1+json"
				return p
			}())},
		{name: "variant pattern of another pipeline", event: with(t, base, "target.repository", "acme/api", "target.tag", "f00d-linux-armv7"), wantAction: "push",
			wantKept: ptr(func() types.RegistryPush {
				p := capturedPush()
				p.Pipeline, p.Revision, p.Platform, p.Tag = "api", "f00d", types.MustPlatform("linux/arm/v7"), "f00d-linux-armv7"
				return p
			}())},
		// BuildKit's registry cache fits the arch tag pattern ("buildcache-linux" would be
		// the revision) but is never one.
		{name: "build cache tag", event: with(t, base, "target.tag", "buildcache-linux-amd64", "target.mediaType", "application/vnd.oci.image.index.v1+json"), wantAction: "push"},
		{name: "platform the pipeline does not build", event: with(t, base, "target.tag", "abc123-s390x"), wantAction: "push"},
		{name: "by digest", event: with(t, base, "target.tag", nil), wantAction: "push"},
		{name: "unrelated repository", event: with(t, base, "target.repository", "acme/other"), wantAction: "push"},
		{name: "repository with the same tail", event: with(t, base, "target.repository", "mirror/acme/web"), wantAction: "push"},
		{name: "cosign signature tag", event: with(t, base, "target.tag", sigTag+".sig"), wantAction: "push"},
		{name: "cosign attestation tag", event: with(t, base, "target.tag", sigTag+".att"), wantAction: "push"},
		{name: "referrers fallback tag", event: with(t, base, "target.tag", sigTag, "target.mediaType", "application/vnd.oci.image.index.v1+json"), wantAction: "push"},
		{name: "blob", event: with(t, base, "target.mediaType", "application/octet-stream"), wantAction: "push"},
		{name: "pull by tag", event: with(t, base, "action", "pull"), wantAction: "pull"},
		{name: "mount", event: with(t, base, "action", "mount", "target.fromRepository", "acme/base"), wantAction: "mount"},
		{name: "delete", event: with(t, base, "action", "delete"), wantAction: "delete"},
		{name: "unknown action", event: with(t, base, "action", "teleport"), wantAction: "other"},
		// Ignored events are never validated: a pull without id or digest is harmless.
		{name: "ignored event without id", event: with(t, base, "action", "pull", "id", nil, "target.digest", nil), wantAction: "pull"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			got := h.post(t, registryPath, envelopeOf(t, tt.event), registryHeader())
			if got.status != http.StatusOK {
				t.Fatalf("got status %d (%s), want 200", got.status, got.body)
			}
			_, stored := h.pub.Snapshot()
			want, outcome := Summary{Ignored: 1}, "ignored"
			if tt.wantKept != nil {
				want, outcome = Summary{Accepted: 1}, "kept"
			}
			if diff := cmp.Diff(want, got.summary(t)); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			var gotKept *types.RegistryPush
			if len(stored) == 1 {
				gotKept = stored[0].Value.(*types.RegistryPush)
			} else if len(stored) > 1 {
				t.Fatalf("got %d messages stored, want at most 1", len(stored))
			}
			if diff := cmp.Diff(tt.wantKept, gotKept); diff != "" {
				t.Errorf("published (-want +got):\n%s", diff)
			}
			if n := h.count("registry", tt.wantAction, outcome); n != 1 {
				t.Errorf("got promoter_events_received_total{registry,%s,%s} = %v, want 1", tt.wantAction, outcome, n)
			}
		})
	}
}

// TestRegistryInvalidRevision: an arch tag whose revision breaks the one rule every source
// follows (types.ValidateRevision) is ignored and counted as invalid, never stored.
func TestRegistryInvalidRevision(t *testing.T) {
	base := capturedEvent(t, "push-by-tag.json")
	for _, tt := range []struct {
		name string
		tag  string
	}{
		{"300-character revision", strings.Repeat("a", 300) + "-amd64"},
		{"one character too long", strings.Repeat("a", types.MaxRevisionLen+1) + "-amd64"},
		{"empty key token", "a..b-amd64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			got := h.post(t, registryPath, envelopeOf(t, with(t, base, "target.tag", tt.tag)), registryHeader())
			if got.status != http.StatusOK {
				t.Fatalf("got status %d (%s), want 200", got.status, got.body)
			}
			if diff := cmp.Diff(Summary{Ignored: 1}, got.summary(t)); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			if _, stored := h.pub.Snapshot(); len(stored) != 0 {
				t.Errorf("got %d stored, want none", len(stored))
			}
			if n := h.count("registry", "push", "invalid"); n != 1 {
				t.Errorf("got promoter_events_received_total{registry,push,invalid} = %v, want 1", n)
			}
		})
	}
}

// TestRegistryStagingHost: two pipelines stage to the same path on different registries;
// the host the registry reports decides, and an unknown host keeps nothing.
func TestRegistryStagingHost(t *testing.T) {
	base := capturedEvent(t, "push-by-tag.json") // request.host is 127.0.0.1:36893
	var pipelines []types.Pipeline
	for _, p := range []struct{ name, staging string }{
		{"local", "127.0.0.1:36893/acme/web"},
		{"remote", "registry.example/acme/web"},
	} {
		pipelines = append(pipelines, types.Pipeline{
			Name: p.name, Staging: types.Repository(p.staging), Platforms: platforms("linux/amd64"), ArchTag: types.DefaultArchTag,
		})
	}
	tests := []struct {
		host         string
		wantPipeline string // empty: ignored
	}{
		{host: "127.0.0.1:36893", wantPipeline: "local"},
		{host: "REGISTRY.example", wantPipeline: "remote"},
		{host: "proxy.example"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			h := newHarnessWith(t, pipelines, allSecrets())
			got := h.post(t, registryPath, envelopeOf(t, with(t, base, "request.host", tt.host)), registryHeader())
			if got.status != http.StatusOK {
				t.Fatalf("got status %d (%s), want 200", got.status, got.body)
			}
			_, stored := h.pub.Snapshot()
			gotPipeline := ""
			if len(stored) == 1 {
				gotPipeline = stored[0].Value.(*types.RegistryPush).Pipeline
			}
			if gotPipeline != tt.wantPipeline {
				t.Errorf("got pipeline %q, want %q", gotPipeline, tt.wantPipeline)
			}
		})
	}
}

// TestRegistryManyEvents sends the events of every captured body in one envelope, twice.
func TestRegistryManyEvents(t *testing.T) {
	var events []map[string]any
	for _, f := range []string{"blob-push.json", "push-by-digest.json", "push-by-tag.json", "pull.json", "push-index.json"} {
		events = append(events, capturedEvent(t, f))
	}
	arm := with(t, capturedEvent(t, "push-by-tag.json"), "id", "arm64-event", "target.tag", "abc123-arm64")
	events = append(events, arm)
	body := envelopeOf(t, events...)

	h := newHarness(t, allSecrets())
	got := h.post(t, registryPath, body, registryHeader())
	if got.status != http.StatusOK {
		t.Fatalf("got status %d (%s), want 200", got.status, got.body)
	}
	if diff := cmp.Diff(Summary{Accepted: 2, Ignored: 4}, got.summary(t)); diff != "" {
		t.Errorf("first delivery summary (-want +got):\n%s", diff)
	}
	_, stored := h.pub.Snapshot()
	var ids []string
	for _, m := range stored {
		ids = append(ids, m.MsgID)
	}
	if diff := cmp.Diff([]string{capturedPushID, "arm64-event"}, ids); diff != "" {
		t.Errorf("published msg ids, in body order (-want +got):\n%s", diff)
	}

	// The registry redelivers the same body (it did not see our answer): the bus reports
	// both kept events as duplicates and they are counted as such.
	got = h.post(t, registryPath, body, registryHeader())
	if got.status != http.StatusOK {
		t.Fatalf("redelivery: got status %d (%s), want 200", got.status, got.body)
	}
	if diff := cmp.Diff(Summary{Duplicates: 2, Ignored: 4}, got.summary(t)); diff != "" {
		t.Errorf("redelivery summary (-want +got):\n%s", diff)
	}
	if _, stored := h.pub.Snapshot(); len(stored) != 2 {
		t.Errorf("got %d messages stored after the redelivery, want 2", len(stored))
	}
	for _, c := range []struct {
		action, outcome string
		want            float64
	}{
		{"push", "kept", 2},
		{"push", "duplicate", 2},
		{"push", "ignored", 6}, // blob, by digest, index; twice
		{"pull", "ignored", 2},
		{"push", "rejected", 0},
	} {
		if n := h.count("registry", c.action, c.outcome); n != c.want {
			t.Errorf("got promoter_events_received_total{registry,%s,%s} = %v, want %v", c.action, c.outcome, n, c.want)
		}
	}
}

func TestRegistryEmptyEnvelope(t *testing.T) {
	h := newHarness(t, allSecrets())
	got := h.post(t, registryPath, []byte(`{"events": []}`), registryHeader())
	if got.status != http.StatusOK {
		t.Fatalf("got status %d (%s), want 200", got.status, got.body)
	}
	if diff := cmp.Diff(Summary{}, got.summary(t)); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

// TestRegistryPublishFailure: while the bus does not acknowledge, the registry gets 503
// with Retry-After and retries; the retry is stored once.
func TestRegistryPublishFailure(t *testing.T) {
	h := newHarness(t, allSecrets())
	body := readTestdata(t, "registry", "push-by-tag.json")

	h.pub.Fail(errBusDown)
	got := h.post(t, registryPath, body, registryHeader())
	if got.status != http.StatusServiceUnavailable {
		t.Fatalf("got status %d (%s), want 503", got.status, got.body)
	}
	if ra := got.header.Get("Retry-After"); ra == "" {
		t.Error("503 without Retry-After")
	}
	// The ack may be what was lost: the message must not claim the event was not stored.
	if msg := got.errorMessage(t); !strings.Contains(msg, "may not be stored") || !strings.Contains(msg, "de-duplicated") ||
		!strings.Contains(msg, errBusDown.Error()) {
		t.Errorf("got error %q, want it to say the event may not be stored, that a retry is de-duplicated, and give the bus error", msg)
	}
	if _, stored := h.pub.Snapshot(); len(stored) != 0 {
		t.Fatalf("got %d stored while the bus is down, want 0", len(stored))
	}

	h.pub.Fail(nil)
	got = h.post(t, registryPath, body, registryHeader())
	if got.status != http.StatusOK {
		t.Fatalf("retry: got status %d (%s), want 200", got.status, got.body)
	}
	if diff := cmp.Diff(Summary{Accepted: 1}, got.summary(t)); diff != "" {
		t.Errorf("retry summary (-want +got):\n%s", diff)
	}
	if _, stored := h.pub.Snapshot(); len(stored) != 1 || stored[0].MsgID != capturedPushID {
		t.Errorf("got stored %+v, want the captured push once", stored)
	}
}

func ptr[T any](v T) *T { return &v }

// TestResponsesCounted: every answer of a receiver is counted under its source and status
// code (promoter_events_responses_total), the 503 of an unacknowledged publish included,
// which promoter_events_received_total does not see.
func TestResponsesCounted(t *testing.T) {
	body := readTestdata(t, "registry", "push-by-tag.json")
	tests := []struct {
		name     string
		path     string
		header   http.Header
		limit    int64
		busDown  bool
		source   string
		wantCode int
	}{
		{name: "stored", path: registryPath, header: registryHeader(), source: "registry", wantCode: 200},
		{name: "bus down", path: registryPath, header: registryHeader(), busDown: true, source: "registry", wantCode: 503},
		{name: "wrong token", path: registryPath, header: http.Header{"Authorization": {"Bearer nope"}, "Content-Type": {EnvelopeMediaType}}, source: "registry", wantCode: 401},
		{name: "too large", path: registryPath, header: registryHeader(), limit: 64, source: "registry", wantCode: 413},
		{name: "another receiver", path: "/v1/events/registry/harbor", header: http.Header{"Authorization": {"Bearer nope"}, "Content-Type": {"application/json"}}, source: "harbor", wantCode: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.limit > 0 {
				opts = append(opts, WithMaxBodyBytes(tt.limit))
			}
			h := newHarness(t, allSecrets(), opts...)
			if tt.busDown {
				h.pub.Fail(errBusDown)
			}
			got := h.post(t, tt.path, body, tt.header)
			if got.status != tt.wantCode {
				t.Fatalf("got status %d (%s), want %d", got.status, got.body, tt.wantCode)
			}
			code := fmt.Sprint(tt.wantCode)
			if n := testutil.ToFloat64(h.metrics.EventResponses.WithLabelValues(tt.source, code)); n != 1 {
				t.Errorf("promoter_events_responses_total{source=%q,code=%q}: got %v, want 1", tt.source, code, n)
			}
			if n := testutil.CollectAndCount(h.metrics.EventResponses); n != 1 {
				t.Errorf("promoter_events_responses_total has %d series, want 1", n)
			}
			// Counting must not hide the server's own writer from http.MaxBytesReader,
			// which has the server close a connection whose body was too large.
			if want := tt.wantCode == http.StatusRequestEntityTooLarge; got.closed != want {
				t.Errorf("connection closed after the answer: %v, want %v", got.closed, want)
			}
		})
	}
}
