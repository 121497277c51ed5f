package events

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
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
	var eventGrid []json.RawMessage
	if err := json.Unmarshal(readTestdata(t, "acr", "eventgrid-image-pushed.json"), &eventGrid); err != nil || len(eventGrid) != 1 {
		t.Fatalf("acr/eventgrid-image-pushed.json: %v", err)
	}
	acrPush := types.RegistryPush{ID: "cb8c3971-9adc-488b-9f2c-43cbb4974ff5", Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64",
		Platform: types.MustPlatform("linux/amd64"), Digest: "sha256:9f9470437ba2cffdd9589f62901cee9a74345a8617c5cf2f94dd0780634ba6d3",
		MediaType: "application/vnd.docker.distribution.manifest.v2+json", Timestamp: time.Date(2026, 12, 2, 5, 0, 2, 343145347, time.UTC)}
	eventGridPush := types.RegistryPush{ID: "31c51664-e5bd-416a-a5df-e5206bc47ed0", Pipeline: "web", Revision: "abc123", Tag: "abc123-arm64",
		Platform: types.MustPlatform("linux/arm64"), Digest: "sha256:eb5ad40b182353efed311f182ab08295e540c08dfd1bbae9113653a0b09467d6",
		MediaType: "application/vnd.docker.distribution.manifest.v2+json", Timestamp: time.Date(2026, 12, 2, 5, 0, 3, 276585742, time.UTC)}
	tests := []struct {
		name, path, file, source string
		body                     []byte // instead of file's
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
		{
			name: "ACR webhook, Bearer token in its custom headers", path: "/v1/events/registry/acr", file: "acr/push.json", source: "acr",
			header: jsonHeader("Bearer " + acrToken), want: acrPush,
		},
		{
			name: "ACR through Event Grid, a batch of CloudEvents", path: "/v1/events/registry/cloudevents", file: "acr/eventgrid-image-pushed.json", source: "cloudevents",
			header: http.Header{"Content-Type": {cloudEventsBatchMediaType + "; charset=utf-8"}, "Authorization": {"Bearer " + cloudEventsToken}},
			want:   eventGridPush,
		},
		{
			name: "ACR through Event Grid, one structured CloudEvent", path: "/v1/events/registry/cloudevents", body: eventGrid[0], source: "cloudevents",
			header: http.Header{"Content-Type": {cloudEventsMediaType + "; charset=utf-8"}, "Authorization": {"Bearer " + cloudEventsToken}},
			want:   eventGridPush,
		},
		{
			name: "Artifact Registry through a Pub/Sub push, token in the URL", path: "/v1/events/registry/gar?token=" + garToken, file: "gar/push.json", source: "gar",
			header: http.Header{"Content-Type": {"application/json"}},
			want: types.RegistryPush{ID: "153364794594948", Pipeline: "images", Revision: "abc123", Tag: "abc123-amd64", Platform: types.MustPlatform("linux/amd64"),
				Digest: "sha256:f375f066c21edfed81da6f70ccfc850e480c2b30163baf3a1e754530a39d7b6e", Timestamp: time.Date(2026, 12, 2, 5, 0, 4, 328000000, time.UTC)},
		},
		{
			name: "ECR through an EventBridge API destination, API key as Authorization", path: "/v1/events/registry/ecr", file: "ecr/push.json", source: "ecr",
			header: http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Authorization": {"Bearer " + ecrToken}},
			want: types.RegistryPush{ID: "13cde686-328b-6117-af20-0e5566167482", Pipeline: "web", Revision: "abc123", Tag: "abc123-arm64", Platform: types.MustPlatform("linux/arm64"),
				Digest: "sha256:e29fc9dc69e0e30cac786320c978cd66b3f40eeac759fc7b2c5a24baf44bce6d", Timestamp: time.Date(2026, 12, 2, 5, 0, 5, 0, time.UTC)},
		},
		{
			name: "ECR through an EventBridge connection with Basic authorization", path: "/v1/events/registry/ecr", file: "ecr/push.json", source: "ecr",
			header: http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Authorization": {basic("promoter", ecrToken)}},
			want: types.RegistryPush{ID: "13cde686-328b-6117-af20-0e5566167482", Pipeline: "web", Revision: "abc123", Tag: "abc123-arm64", Platform: types.MustPlatform("linux/arm64"),
				Digest: "sha256:e29fc9dc69e0e30cac786320c978cd66b3f40eeac759fc7b2c5a24baf44bce6d", Timestamp: time.Date(2026, 12, 2, 5, 0, 5, 0, time.UTC)},
		},
		{
			// Harbor 1.x: the Default format's envelope under the type pushImage.
			name: "Harbor 1.x pushImage", path: "/v1/events/registry/harbor", file: "harbor/push-image-v1.json", source: "harbor",
			header: http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}},
			want: types.RegistryPush{Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64", Platform: types.MustPlatform("linux/amd64"),
				Digest: "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e", Timestamp: time.Unix(1764651600, 0).UTC()},
		},
		{
			name: "Harbor's CloudEvent with data as a JSON string", path: "/v1/events/registry/harbor", body: stringData(t, readTestdata(t, "harbor", "push-cloudevents.json")), source: "harbor",
			header: http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + harborToken}},
			want: types.RegistryPush{ID: "4b2f89a6-548d-4c12-9993-a1f5790b97d2/0", Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64",
				Platform: types.MustPlatform("linux/amd64"), Digest: "sha256:1dffc1c2e037b602b1e7e42c318b6ca74d21002e6f32115de009d8d216e1a44e",
				Timestamp: time.Date(2025, 12, 2, 5, 0, 0, 0, time.UTC)},
		},
		{
			name: "ACR through Event Grid, CloudEvents batch with data as a JSON string", path: "/v1/events/registry/cloudevents", file: "acr/eventgrid-cloudevent-string-data.json", source: "cloudevents",
			header: http.Header{"Content-Type": {cloudEventsBatchMediaType + "; charset=utf-8"}, "Authorization": {"Bearer " + cloudEventsToken}},
			want:   eventGridPush,
		},
		{
			name: "ACR through Event Grid, CloudEvents batch on the ACR endpoint", path: "/v1/events/registry/acr", file: "acr/eventgrid-cloudevent-string-data.json", source: "acr",
			header: http.Header{"Content-Type": {cloudEventsBatchMediaType + "; charset=utf-8"}, "Authorization": {"Bearer " + acrToken}},
			want:   eventGridPush,
		},
		{
			name: "ACR through Event Grid, Event Grid schema", path: "/v1/events/registry/acr", file: "acr/eventgrid-schema-image-pushed.json", source: "acr",
			header: jsonHeader("Bearer " + acrToken), want: eventGridPush,
		},
		{
			name: "ACR through Event Grid, Event Grid schema with data as a JSON string", path: "/v1/events/registry/acr", file: "acr/eventgrid-schema-string-data.json", source: "acr",
			header: jsonHeader("Bearer " + acrToken),
			want: types.RegistryPush{ID: "1382c70d-30dc-4478-832c-723a6fc39f2d", Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64",
				Platform: types.MustPlatform("linux/amd64"), Digest: "sha256:90659bf80b44ce6be8234e6ff90a1ac34acbeb826903b02cfa0da11c82cbc042",
				MediaType: "application/vnd.docker.distribution.manifest.v2+json", Timestamp: time.Date(2026, 12, 2, 5, 0, 2, 856128158, time.UTC)},
		},
		{
			name: "Zot's event as a structured CloudEvent with data as a JSON string", path: "/v1/events/registry/cloudevents", body: zotStructured(t, true), source: "cloudevents",
			header: http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + cloudEventsToken}},
			want: types.RegistryPush{ID: "6b0b0e5c-2f7e-4f3f-9a34-0c6ad8f1f3b1", Pipeline: "web", Revision: "abc123", Tag: "abc123-arm64",
				Platform: types.MustPlatform("linux/arm64"), Digest: "sha256:2e7a9a6e9b3b1bcd1a0ef8b73b4f7d5e7c0b0a4c0f0e35f2f5b1c0d9a8e7f6a5",
				MediaType: "application/vnd.oci.image.manifest.v1+json", Timestamp: time.Date(2025, 12, 2, 5, 0, 1, 123456789, time.UTC)},
		},
		{
			// A relay that forwards the message without its messageId: the id is derived.
			name: "Artifact Registry through a Pub/Sub push without messageId", path: "/v1/events/registry/gar?token=" + garToken, file: "gar/push-no-message-id.json", source: "gar",
			header: http.Header{"Content-Type": {"application/json"}},
			want: types.RegistryPush{Pipeline: "images", Revision: "abc123", Tag: "abc123-amd64", Platform: types.MustPlatform("linux/amd64"),
				Digest: "sha256:f375f066c21edfed81da6f70ccfc850e480c2b30163baf3a1e754530a39d7b6e", Timestamp: time.Date(2026, 12, 2, 5, 0, 4, 328000000, time.UTC)},
		},
		{
			name: "Quay, docker_url with a scheme", path: "/v1/events/registry/quay?token=" + quayToken, file: "quay/push-https-docker-url.json", source: "quay",
			header: http.Header{"Content-Type": {"application/json"}},
			want: types.RegistryPush{Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64", Platform: types.MustPlatform("linux/amd64"),
				Timestamp: testNow.Truncate(time.Minute)},
		},
		{
			// No digest: the merger reads it from the registry. No time: the receiver's clock.
			name: "Quay, token in the URL", path: "/v1/events/registry/quay?token=" + quayToken, file: "quay/push.json", source: "quay",
			header: http.Header{"Content-Type": {"application/json"}},
			want: types.RegistryPush{Pipeline: "web", Revision: "abc123", Tag: "abc123-amd64", Platform: types.MustPlatform("linux/amd64"),
				Timestamp: testNow.Truncate(time.Minute)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, allSecrets())
			body := tc.body
			if body == nil {
				body = readTestdata(t, strings.Split(tc.file, "/")...)
			}
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

// stringData returns a structured CloudEvent (or a batch of them) with each event's data
// encoded once more as a JSON string, as Event Grid delivers it.
func stringData(t *testing.T, body []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	events, batch := v.([]any)
	if !batch {
		events = []any{v}
	}
	for _, e := range events {
		m := e.(map[string]any)
		data, err := json.Marshal(m["data"])
		if err != nil {
			t.Fatal(err)
		}
		m["data"] = string(data)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zotStructured is Zot's binary-mode fixture as one structured CloudEvent; asString
// encodes its data as a JSON string.
func zotStructured(t *testing.T, asString bool) []byte {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal(readTestdata(t, "cloudevents", "zot-image-updated.json"), &data); err != nil {
		t.Fatal(err)
	}
	e := map[string]any{"data": data}
	for k, v := range headersOf(t, "cloudevents", "zot-image-updated.headers.json") {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "ce-"); ok {
			e[name] = v[0]
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if asString {
		return stringData(t, b)
	}
	return b
}

func jsonHeader(auth string) http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Authorization": {auth}}
}

// pubsubPushOf wraps an Artifact Registry notification in the Pub/Sub push envelope of
// testdata/gar/push.json, as the message's base64 data.
func pubsubPushOf(t *testing.T, notification string) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(readTestdata(t, "gar", "push.json"), &env); err != nil {
		t.Fatal(err)
	}
	env["message"].(map[string]any)["data"] = base64.StdEncoding.EncodeToString([]byte(notification))
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
	without := func(h http.Header, key string) http.Header { h = h.Clone(); h.Del(key); return h }
	acr := readTestdata(t, "acr", "push.json")
	ecr := readTestdata(t, "ecr", "push.json")
	gar := readTestdata(t, "gar", "push.json")
	quay := readTestdata(t, "quay", "push.json")
	plainJSON := http.Header{"Content-Type": {"application/json"}}
	const (
		acrPath, ecrPath = "/v1/events/registry/acr", "/v1/events/registry/ecr"
		garPath          = "/v1/events/registry/gar?token=" + garToken
		quayPath         = "/v1/events/registry/quay?token=" + quayToken
	)
	tests := []struct {
		name, path string
		secrets    Secrets
		body       []byte
		header     http.Header
		status     int
		msg        string
	}{
		{"Harbor without a configured token", "/v1/events/registry/harbor", Secrets{"registry": registryToken}, harbor, jsonHeader(harborToken), 401, "set auth.harbor.token"},
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

		{"ACR without a configured token", acrPath, Secrets{"registry": registryToken}, acr, jsonHeader("Bearer " + acrToken), 401, "set auth.acr.token"},
		{"ACR, wrong token", acrPath, allSecrets(), acr, jsonHeader("Bearer " + harborToken), 401, "auth.acr.token"},
		{"ACR, no Authorization", acrPath, allSecrets(), acr, plainJSON, 401, "missing Authorization"},
		{"ACR, not JSON", acrPath, allSecrets(), []byte("{"), jsonHeader("Bearer " + acrToken), 400, "decoding ACR webhook payload"},
		{"ACR, no action", acrPath, allSecrets(), []byte(`{"id":"1","target":{}}`), jsonHeader("Bearer " + acrToken), 400, `no "action"`},
		{"ACR push without repository", acrPath, allSecrets(), []byte(`{"id":"1","action":"push","target":{"tag":"abc123-amd64"}}`), jsonHeader("Bearer " + acrToken), 400, "target.repository"},
		{"ACR through Event Grid, data that is no ACR event", "/v1/events/registry/cloudevents", allSecrets(),
			[]byte(`{"specversion":"1.0","id":"1","source":"/subscriptions/x","type":"Microsoft.ContainerRegistry.ImagePushed","data":{"id":"2"}}`),
			http.Header{"Content-Type": {cloudEventsMediaType}, "Authorization": {"Bearer " + cloudEventsToken}}, 400, `no "action"`},

		{"Artifact Registry without a configured token", garPath, Secrets{"registry": registryToken}, gar, plainJSON, 401, "set auth.gar.token"},
		{"Artifact Registry, token in a header instead of the URL", "/v1/events/registry/gar", allSecrets(), gar, jsonHeader("Bearer " + garToken), 401, "missing ?token="},
		{"Artifact Registry, wrong token", "/v1/events/registry/gar?token=guess", allSecrets(), gar, plainJSON, 401, "wrong ?token="},
		{"Artifact Registry, unwrapped payload", garPath, allSecrets(), []byte(`{"action":"INSERT","tag":"europe-west1-docker.pkg.dev/acme-prod/containers/web:abc123-amd64"}`), plainJSON, 400, "payload unwrapping"},
		{"Artifact Registry, data not base64", garPath, allSecrets(), []byte(`{"message":{"data":"%%%","messageId":"1"}}`), plainJSON, 400, "not base64"},
		{"Artifact Registry, data not JSON", garPath, allSecrets(), pubsubPushOf(t, "INSERT"), plainJSON, 400, "decoding Artifact Registry notification"},
		{"Artifact Registry, a tag that is no image reference", garPath, allSecrets(), pubsubPushOf(t, `{"action":"INSERT","tag":"abc123-amd64"}`), plainJSON, 400, "HOST/PATH:TAG"},
		{"Artifact Registry, INSERT naming no image", garPath, allSecrets(), pubsubPushOf(t, `{"action":"INSERT"}`), plainJSON, 400, "names no image"},
		{"Artifact Registry, form body", garPath, allSecrets(), gar, http.Header{"Content-Type": {"text/plain"}}, 415, "application/json"},

		{"ECR without a configured token", ecrPath, Secrets{"registry": registryToken}, ecr, jsonHeader("Bearer " + ecrToken), 401, "set auth.ecr.token"},
		{"ECR, API key under another header", ecrPath, allSecrets(), ecr, http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {ecrToken}}, 401, "missing Authorization"},
		{"ECR, wrong token", ecrPath, allSecrets(), ecr, jsonHeader("Bearer guess"), 401, "auth.ecr.token"},
		{"ECR, not JSON", ecrPath, allSecrets(), []byte("["), jsonHeader("Bearer " + ecrToken), 400, "decoding EventBridge event"},
		{"ECR, the detail alone (an input transformer)", ecrPath, allSecrets(),
			[]byte(`{"result":"SUCCESS","repository-name":"acme/web","action-type":"PUSH","image-tag":"abc123-amd64"}`), jsonHeader("Bearer " + ecrToken), 400, "input transformer"},
		{"ECR push without repository", ecrPath, allSecrets(),
			[]byte(`{"id":"1","source":"aws.ecr","detail-type":"ECR Image Action","detail":{"result":"SUCCESS","action-type":"PUSH","image-tag":"abc123-amd64"}}`), jsonHeader("Bearer " + ecrToken), 400, "repository-name"},
		{"ECR, the documentation's 60-digit digest", ecrPath, allSecrets(),
			setJSON(t, ecr, "detail.image-digest", "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234"), jsonHeader("Bearer " + ecrToken), 400, "digest"},

		{"Quay without a configured token", quayPath, Secrets{"registry": registryToken}, quay, plainJSON, 401, "set auth.quay.token"},
		{"Quay, no token", "/v1/events/registry/quay", allSecrets(), quay, plainJSON, 401, "missing ?token="},
		{"Quay, another receiver's token", "/v1/events/registry/quay?token=" + garToken, allSecrets(), quay, plainJSON, 401, "auth.quay.token"},
		{"Quay, not JSON", quayPath, allSecrets(), []byte("}"), plainJSON, 400, "decoding Quay notification"},
		{"Quay, updated_tags not a list", quayPath, allSecrets(), []byte(`{"repository":"acme/web","updated_tags":{"abc123-amd64":"b750fe79"}}`), plainJSON, 400, "decoding Quay notification"},
		{"Quay push without repository (a body template)", quayPath, allSecrets(), []byte(`{"updated_tags":["abc123-amd64"]}`), plainJSON, 400, "body template"},
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
	acr, ecr := jsonHeader("Bearer "+acrToken), jsonHeader("Bearer "+ecrToken)
	plainJSON := http.Header{"Content-Type": {"application/json"}}
	const gar, quay = "/v1/events/registry/gar?token=" + garToken, "/v1/events/registry/quay?token=" + quayToken
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

		{"ACR delete", "/v1/events/registry/acr", readTestdata(t, "acr", "delete.json"), acr, 1},
		{"ACR Helm chart push", "/v1/events/registry/acr",
			[]byte(`{"id":"6356e9e0","action":"chart_push","target":{"mediaType":"application/vnd.acr.helm.chart","repository":"acme/web","tag":"abc123-amd64"}}`), acr, 1},
		{"ACR push by digest", "/v1/events/registry/acr",
			[]byte(`{"id":"1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"acme/web","digest":"sha256:9f9470437ba2cffdd9589f62901cee9a74345a8617c5cf2f94dd0780634ba6d3"}}`), acr, 1},
		{"ACR push of a tag that is no arch tag", "/v1/events/registry/acr",
			[]byte(`{"id":"1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"acme/web","tag":"latest"}}`), acr, 1},
		{"ACR through Event Grid, an image deleted", "/v1/events/registry/cloudevents",
			[]byte(`{"specversion":"1.0","id":"1","source":"/subscriptions/x","type":"Microsoft.ContainerRegistry.ImageDeleted","data":{"action":"delete","target":{"repository":"acme/web"}}}`), ce, 1},

		{"Artifact Registry DELETE", gar, pubsubPushOf(t, `{"action":"DELETE","tag":"europe-west1-docker.pkg.dev/acme-prod/containers/web:abc123-amd64"}`), plainJSON, 1},
		{"Artifact Registry untagged upload", gar,
			pubsubPushOf(t, `{"action":"INSERT","digest":"europe-west1-docker.pkg.dev/acme-prod/containers/web@sha256:f375f066c21edfed81da6f70ccfc850e480c2b30163baf3a1e754530a39d7b6e"}`), plainJSON, 1},
		{"Artifact Registry upload to another repository", gar,
			pubsubPushOf(t, `{"action":"INSERT","tag":"europe-west1-docker.pkg.dev/acme-prod/containers/other:abc123-amd64"}`), plainJSON, 1},

		{"ECR push that failed", "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "detail.result", "FAILURE"), ecr, 1},
		{"ECR delete", "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "detail.action-type", "DELETE"), ecr, 1},
		{"ECR push by digest", "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "detail.image-tag", nil), ecr, 1},
		{"ECR image scan", "/v1/events/registry/ecr", setJSON(t, readTestdata(t, "ecr", "push.json"), "detail-type", "ECR Image Scan"), ecr, 1},

		{"Quay build event (no updated_tags)", quay, []byte(`{"repository":"acme/web","docker_url":"quay.io/acme/web","build_id":"296ec063","docker_tags":["abc123-amd64"]}`), plainJSON, 1},
		{"Quay push of latest", quay, []byte(`{"repository":"acme/web","docker_url":"quay.io/acme/web","updated_tags":["latest"]}`), plainJSON, 1},
		{"Quay push naming no tag", quay, []byte(`{"repository":"acme/web","docker_url":"quay.io/acme/web","updated_tags":[]}`), plainJSON, 1},
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

// TestQuayNamesPushesByTagAndMinute: Quay's payload has no id and no time. Each updated
// tag is one push; a redelivery in the same minute is a duplicate, the same push a minute
// later is a new event (a moved arch tag must not pass for a repeat).
func TestQuayNamesPushesByTagAndMinute(t *testing.T) {
	var now atomic.Int64 // the receiver's clock, in seconds after testNow
	now.Store(10)
	h := newHarness(t, allSecrets(), WithClock(func() time.Time { return testNow.Add(time.Duration(now.Load()) * time.Second) }))
	path := "/v1/events/registry/quay?token=" + quayToken
	body := setJSON(t, readTestdata(t, "quay", "push.json"), "updated_tags", []string{"abc123-amd64", "abc123-arm64", "latest"})
	header := http.Header{"Content-Type": {"application/json"}}

	if s := h.post(t, path, body, header).summary(t); s != (Summary{Accepted: 2, Ignored: 1}) {
		t.Fatalf("first delivery: %+v, want 2 accepted (the arch tags) and 1 ignored (latest)", s)
	}
	now.Store(50)
	if s := h.post(t, path, body, header).summary(t); s != (Summary{Ignored: 1, Duplicates: 2}) {
		t.Errorf("redelivery within the minute: %+v, want the 2 pushes as duplicates", s)
	}
	now.Store(70)
	if s := h.post(t, path, body, header).summary(t); s != (Summary{Accepted: 2, Ignored: 1}) {
		t.Errorf("the same pushes a minute later: %+v, want 2 new events", s)
	}
	_, stored := h.pub.Snapshot()
	ids := map[string]bool{}
	for _, m := range stored {
		ids[m.MsgID] = true
		if p := m.Value.(*types.RegistryPush); p.Digest != "" || !strings.HasPrefix(p.ID, "quay-") {
			t.Errorf("stored %+v, want a derived quay- id and no digest", p)
		}
	}
	if len(stored) != 4 || len(ids) != 4 {
		t.Errorf("stored %d pushes with %d ids, want 4 and 4", len(stored), len(ids))
	}
	if n := h.count("quay", "push", "kept"); n != 4 {
		t.Errorf(`promoter_events_received_total{source="quay",action="push",outcome="kept"} = %v, want 4`, n)
	}
}

// TestCloudEventsWebhookValidation: Event Grid validates a CloudEvents endpoint with the
// CloudEvents webhook handshake (OPTIONS, WebHook-Request-Origin) before delivering to it.
func TestCloudEventsWebhookValidation(t *testing.T) {
	tests := []struct {
		name    string
		secrets Secrets
		origin  string
		status  int
		allowed string
	}{
		{"Event Grid's request", allSecrets(), "eventgrid.azure.net", http.StatusOK, "eventgrid.azure.net"},
		{"no origin", allSecrets(), "", http.StatusBadRequest, ""},
		{"receiver disabled", Secrets{"registry": registryToken}, "eventgrid.azure.net", http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.secrets)
			req, _ := http.NewRequest(http.MethodOptions, h.srv.URL+"/v1/events/registry/cloudevents", nil)
			if tc.origin != "" {
				req.Header.Set("WebHook-Request-Origin", tc.origin)
			}
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("WebHook-Allowed-Origin") != tc.allowed {
				t.Errorf("got %d with WebHook-Allowed-Origin %q, want %d and %q",
					resp.StatusCode, resp.Header.Get("WebHook-Allowed-Origin"), tc.status, tc.allowed)
			}
		})
	}
}
