package events

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// headersOf reads a fixture's headers file (a JSON object of header → value).
func headersOf(t *testing.T, elem ...string) http.Header {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(readTestdata(t, elem...), &m); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

func withAuth(h http.Header, value string) http.Header {
	h = h.Clone()
	h.Set("Authorization", value)
	return h
}

// TestRegistryFormatsKeepArchTagPushes posts each vendor's fixture to its endpoint: the
// arch-tag push becomes the same RegistryPush, whatever the format.
func TestRegistryFormatsKeepArchTagPushes(t *testing.T) {
	zot := headersOf(t, "cloudevents", "zot-image-updated.headers.json")
	tests := []struct {
		name, path, file, source string
		header                   http.Header
		want                     types.RegistryPush
	}{
		{
			name: "Harbor, Default format, bare token", path: "/v1/events/registry/harbor", file: "harbor/push-default.json", source: "harbor",
			header: http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}},
			want: types.RegistryPush{Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64", Platform: types.MustPlatform("linux/amd64"),
				Digest: "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e", Timestamp: time.Unix(1764651600, 0).UTC()},
		},
		{
			name: "Harbor, CloudEvents format, Bearer token", path: "/v1/events/registry/harbor", file: "harbor/push-cloudevents.json", source: "harbor",
			header: http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + harborToken}},
			want: types.RegistryPush{ID: "4b2f89a6-548d-4c12-9993-a1f5790b97d2/0", Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64",
				Platform: types.MustPlatform("linux/amd64"), Digest: "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e",
				Timestamp: time.Date(2025, 12, 2, 5, 0, 0, 0, time.UTC)},
		},
		{
			name: "Harbor's structured CloudEvent on the CloudEvents endpoint", path: "/v1/events/registry/cloudevents", file: "harbor/push-cloudevents.json", source: "cloudevents",
			header: http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + cloudEventsToken}},
			want: types.RegistryPush{ID: "4b2f89a6-548d-4c12-9993-a1f5790b97d2/0", Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64",
				Platform: types.MustPlatform("linux/amd64"), Digest: "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e",
				Timestamp: time.Date(2025, 12, 2, 5, 0, 0, 0, time.UTC)},
		},
		{
			name: "Zot, binary mode, Basic credentials", path: "/v1/events/registry/cloudevents", file: "cloudevents/zot-image-updated.json", source: "cloudevents",
			header: withAuth(zot, basic("zot", cloudEventsToken)),
			want: types.RegistryPush{ID: "6b0b0e5c-2f7e-4f3f-9a34-0c6ad8f1f3b1", Pipeline: "web", Revision: "abc123", Tag: "abc123-arm64",
				Platform: types.MustPlatform("linux/arm64"), Digest: "sha256:2e7a9a6e9b3b1bcd1a0ef8b73b4f7d5e7c0b0a4c0f0e35f2f5b1c0d9a8e7f6a5",
				MediaType: "application/vnd.oci.image.manifest.v1+json", Timestamp: time.Date(2025, 12, 2, 5, 0, 1, 123456789, time.UTC)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			body := readTestdata(t, strings.Split(tc.file, "/")...)
			r := h.post(t, tc.path, body, tc.header)
			if r.status != http.StatusOK || r.summary(t).Accepted != 1 {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			_, stored := h.pub.Snapshot()
			if len(stored) != 1 || stored[0].Subject != types.SubjectRegistryPush {
				t.Fatalf("stored %+v", stored)
			}
			got := *stored[0].Value.(*types.RegistryPush)
			want := tc.want
			if want.ID == "" {
				want.ID = got.ID // derived: checked below
				if !strings.HasPrefix(got.ID, tc.source+"-") {
					t.Errorf("derived id %q, want it prefixed %q", got.ID, tc.source+"-")
				}
			}
			if got != want {
				t.Errorf("published\n %+v\nwant\n %+v", got, want)
			}
			if stored[0].MsgID != got.ID {
				t.Errorf("message id %q, want the event id %q", stored[0].MsgID, got.ID)
			}
			if h.count(tc.source, "push", "kept") != 1 {
				t.Errorf("promoter_events_received_total{source=%q,action=push,outcome=kept} not counted", tc.source)
			}
			// The registry retrying the same delivery is one event.
			if again := h.post(t, tc.path, body, tc.header); again.status != http.StatusOK || again.summary(t).Duplicates != 1 {
				t.Errorf("redelivery: %d %s", again.status, again.body)
			}
		})
	}
}

func basic(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// TestRegistryFormatsRefuse: wrong or missing credentials, malformed bodies and events
// that are not CloudEvents are refused with a status and a message that says what to fix;
// nothing is stored.
func TestRegistryFormatsRefuse(t *testing.T) {
	harbor := readTestdata(t, "harbor", "push-default.json")
	zot := readTestdata(t, "cloudevents", "zot-image-updated.json")
	zotHeader := withAuth(headersOf(t, "cloudevents", "zot-image-updated.headers.json"), "Bearer "+cloudEventsToken)
	jsonHeader := func(auth string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "Authorization": {auth}}
	}
	without := func(h http.Header, key string) http.Header { h = h.Clone(); h.Del(key); return h }
	tests := []struct {
		name, path string
		secrets    Secrets
		body       []byte
		header     http.Header
		status     int
		msg        string
	}{
		{"Harbor without a configured token", "/v1/events/registry/harbor", Secrets{RegistryToken: registryToken}, harbor, jsonHeader(harborToken), 401, "set auth.harbor.token"},
		{"Harbor, wrong token", "/v1/events/registry/harbor", allSecrets(), harbor, jsonHeader("Bearer guess"), 401, "auth.harbor.token"},
		{"Harbor, no Authorization", "/v1/events/registry/harbor", allSecrets(), harbor, http.Header{"Content-Type": {"application/json"}}, 401, "missing Authorization"},
		{"Harbor, not JSON", "/v1/events/registry/harbor", allSecrets(), []byte("{"), jsonHeader(harborToken), 400, "decoding Harbor payload"},
		{"Harbor, no type", "/v1/events/registry/harbor", allSecrets(), []byte(`{"event_data":{}}`), jsonHeader(harborToken), 400, "payload format"},
		{"Harbor, form body", "/v1/events/registry/harbor", allSecrets(), harbor, http.Header{"Content-Type": {"text/plain"}, "Authorization": {harborToken}}, 415, "application/json"},
		{"Harbor push without repository", "/v1/events/registry/harbor", allSecrets(), []byte(`{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"abc123-amd64"}]}}`), jsonHeader(harborToken), 400, "repo_full_name"},
		{"CloudEvents, Basic with a wrong password", "/v1/events/registry/cloudevents", allSecrets(), zot, withAuth(zotHeader, basic("zot", "guess")), 401, "wrong password"},
		{"CloudEvents, binary mode without ce-id", "/v1/events/registry/cloudevents", allSecrets(), zot, without(zotHeader, "Ce-Id"), 400, "not a CloudEvent 1.0"},
		{"CloudEvents, bad ce-time", "/v1/events/registry/cloudevents", allSecrets(), zot, withAuth(func() http.Header { h := zotHeader.Clone(); h.Set("Ce-Time", "yesterday"); return h }(), "Bearer "+cloudEventsToken), 400, "RFC 3339"},
		{"CloudEvents, plain JSON without ce- headers", "/v1/events/registry/cloudevents", allSecrets(), zot, without(without(without(without(zotHeader, "Ce-Specversion"), "Ce-Id"), "Ce-Type"), "Ce-Source"), 415, "application/cloudevents+json"},
		{"CloudEvents, data that does not decode", "/v1/events/registry/cloudevents", allSecrets(), []byte(`[1]`), zotHeader, 400, "decoding the data"},
		{"CloudEvents, structured, wrong specversion", "/v1/events/registry/cloudevents", allSecrets(),
			[]byte(`{"specversion":"0.3","id":"1","source":"s","type":"zotregistry.image.updated","data":{}}`),
			http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + cloudEventsToken}}, 400, "specversion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.secrets)
			r := h.post(t, tc.path, tc.body, tc.header)
			if r.status != tc.status || !strings.Contains(r.errorMessage(t), tc.msg) {
				t.Fatalf("got %d %s, want %d mentioning %q", r.status, r.body, tc.status, tc.msg)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("%d publishes for a refused notification", calls)
			}
		})
	}
}

// TestRegistryFormatsIgnore: events that are not arch-tag pushes are acknowledged,
// counted and not stored.
func TestRegistryFormatsIgnore(t *testing.T) {
	ce := http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + cloudEventsToken}}
	batch := http.Header{"Content-Type": {cloudEventsBatchMediaType}, "Authorization": {"Bearer " + cloudEventsToken}}
	zotHeader := withAuth(headersOf(t, "cloudevents", "zot-image-updated.headers.json"), "Bearer "+cloudEventsToken)
	tests := []struct {
		name, path string
		body       []byte
		header     http.Header
		ignored    int
	}{
		{"Harbor pull", "/v1/events/registry/harbor", readTestdata(t, "harbor", "pull-default.json"), http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}}, 1},
		{"Harbor push by digest", "/v1/events/registry/harbor",
			[]byte(`{"type":"PUSH_ARTIFACT","occur_at":1,"event_data":{"resources":[{"digest":"sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e","tag":"sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e"}],"repository":{"repo_full_name":"acme/web"}}}`),
			http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}}, 1},
		{"Harbor push to another repository", "/v1/events/registry/harbor",
			[]byte(`{"type":"PUSH_ARTIFACT","occur_at":1,"event_data":{"resources":[{"tag":"abc123-amd64"}],"repository":{"repo_full_name":"acme/other"}}}`),
			http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}}, 1},
		{"a CloudEvent of another type", "/v1/events/registry/cloudevents",
			[]byte(`{"specversion":"1.0","id":"1","source":"zotregistry.dev","type":"zotregistry.image.deleted","data":{"name":"acme/web","reference":"abc123-amd64"}}`), ce, 1},
		{"a batch: one push by digest, one signature tag", "/v1/events/registry/cloudevents",
			[]byte(`[{"specversion":"1.0","id":"1","source":"z","type":"zotregistry.image.updated","data":{"name":"acme/web","reference":"sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e"}},
			 {"specversion":"1.0","id":"2","source":"z","type":"zotregistry.image.updated","data":{"name":"acme/web","reference":"sha256-1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e.sig"}}]`), batch, 2},
		{"Zot pushing a blob's media type", "/v1/events/registry/cloudevents",
			[]byte(`{"name":"acme/web","reference":"abc123-amd64","mediaType":"application/octet-stream"}`), zotHeader, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			r := h.post(t, tc.path, tc.body, tc.header)
			if r.status != http.StatusOK {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			if s := r.summary(t); s.Ignored != tc.ignored || s.Accepted != 0 {
				t.Errorf("summary %+v, want %d ignored", s, tc.ignored)
			}
			if calls, _ := h.pub.Snapshot(); calls != 0 {
				t.Errorf("%d publishes for ignored events", calls)
			}
		})
	}
}
