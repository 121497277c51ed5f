package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// vendorFixture reads a fixture of internal/events/testdata (a vendor's payload, see the
// README next to it) as JSON to edit.
func vendorFixture(t *testing.T, elem ...string) map[string]any {
	t.Helper()
	return readFixture[map[string]any](t, elem...)
}

// readFixture decodes a fixture of internal/events/testdata into a T.
func readFixture[T any](t *testing.T, elem ...string) T {
	t.Helper()
	var v T
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "internal", "events", "testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", filepath.Join(elem...), err)
	}
	return v
}

// postEvent sends a registry's notification to the daemon and fails the test unless it
// is stored (2xx).
func postEvent(t *testing.T, url string, body any, header http.Header) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reply bytes.Buffer
	_, _ = reply.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(reply.String(), `"accepted":1`) {
		t.Fatalf("POST %s: %s %s", url, resp.Status, reply.String())
	}
}

// digestOf is what the registry holds under ref now.
func digestOf(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r)
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return desc.Digest.String()
}

// announcer posts a vendor's notification of the arch tag just pushed to the staging
// repository acme/web on host, which holds digest under tag.
type announcer func(t *testing.T, d *runningDaemon, host, tag, digest string)

// vendorChain drives revision c0ffee1 of pipeline web from push to promoted with vendors'
// notifications. Per-arch images are pushed to a real registry that notifies nobody, one
// at a time: the merger reads every arch tag from the registry, so with both there the
// first event would merge, and the second would prove nothing. After the amd64 push, amd64
// announces it and the revision waits for arm64; after the arm64 push, arm64 announces
// that, and the revision is merged and promoted by the digests the registry holds.
// senders are the webhook senders the daemon accepts, each with its bearer token
// (auth.<sender>.token); the daemon has no registryToken.
func vendorChain(t *testing.T, senders map[string]string, amd64, arm64 announcer) *runningDaemon {
	t.Helper()
	staging := testenv.StartRegistry(t)
	prod := testenv.StartRegistry(t)
	stagingRepo, prodRepo := staging.Host+"/acme/web", prod.Host+"/acme/web"
	d := startDaemon(t, vendorConfig(t, senders, stagingRepo, prodRepo))

	const rev = "c0ffee1"
	created := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	testenv.Push(t, stagingRepo+":"+rev+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	amd := digestOf(t, stagingRepo+":"+rev+"-amd64")
	amd64(t, d, staging.Host, rev+"-amd64", amd)
	if r := d.waitPhase(t, "web", rev, 30*time.Second, types.PhaseWaiting); r.Platforms["linux/amd64"].Digest != amd || r.Platforms["linux/arm64"].Digest != "" {
		t.Fatalf("after the amd64 notification: %+v, want amd64 %s and no arm64 yet", r.Platforms, amd)
	}

	testenv.Push(t, stagingRepo+":"+rev+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	arm := digestOf(t, stagingRepo+":"+rev+"-arm64")
	arm64(t, d, staging.Host, rev+"-arm64", arm)
	r := d.waitPhase(t, "web", rev, 60*time.Second, types.PhasePromoted)
	if r.Platforms["linux/amd64"].Digest != amd || r.Platforms["linux/arm64"].Digest != arm {
		t.Errorf("merged %+v, want amd64 %s and arm64 %s", r.Platforms, amd, arm)
	}
	if got := digestOf(t, prodRepo+":"+rev); got != r.Index {
		t.Errorf("%s:%s is %s, want the merged index %s", prodRepo, rev, got, r.Index)
	}
	return d
}

// vendorConfig is vendorChain's daemon config: pipeline web, merging both platforms from
// stagingRepo and promoting to prodRepo, fed by senders' webhooks only.
func vendorConfig(t testing.TB, senders map[string]string, stagingRepo, prodRepo string) string {
	t.Helper()
	mods := []configMod{withoutRegistryToken(), withReconcile("1h"),
		withPipeline(pipelineConfig{Name: "web", Platforms: bothArches, Staging: stagingRepo, Promote: []promoteConfig{{To: prodRepo}}})}
	for sender, token := range senders {
		mods = append(mods, withToken(sender, token))
	}
	return newDaemonConfig(t, mods...)
}

// wantKept checks promoter_events_received_total{source,action="push",outcome="kept"}.
func wantKept(t *testing.T, d *runningDaemon, kept map[string]float64) {
	t.Helper()
	for source, want := range kept {
		if n := testutil.ToFloat64(d.Metrics.EventsReceived.WithLabelValues(source, "push", "kept", "")); n != want {
			t.Errorf("promoter_events_received_total{source=%q,action=push,outcome=kept} = %v, want %v", source, n, want)
		}
	}
}

// TestVendorNotificationsDriveTheChain: Harbor's Default payload announces the amd64
// image, Zot's binary-mode CloudEvent the arm64 image (vendorChain).
func TestVendorNotificationsDriveTheChain(t *testing.T) {
	const harborToken, cloudEventsToken = "e2e-harbor-token", "e2e-cloudevents-token"
	harbor := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		harbor := vendorFixture(t, "harbor", "push-default.json")
		harbor["occur_at"] = time.Now().Unix()
		data := harbor["event_data"].(map[string]any)
		data["resources"] = []any{map[string]any{"digest": digest, "tag": tag, "resource_url": host + "/acme/web:" + tag}}
		data["repository"].(map[string]any)["repo_full_name"] = "acme/web"
		postEvent(t, d.URL+"/v1/events/registry/harbor", harbor,
			http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}})
	}
	zot := func(t *testing.T, d *runningDaemon, _, tag, digest string) {
		zot := vendorFixture(t, "cloudevents", "zot-image-updated.json")
		zot["name"], zot["reference"], zot["digest"] = "acme/web", tag, digest
		h := http.Header{}
		for k, v := range readFixture[map[string]string](t, "cloudevents", "zot-image-updated.headers.json") {
			h.Set(k, v)
		}
		h.Set("Ce-Id", "e2e-"+tag)
		h.Set("Ce-Time", time.Now().UTC().Format(time.RFC3339Nano))
		h.Set("Authorization", "Basic "+basicCredentials("zot", cloudEventsToken))
		postEvent(t, d.URL+"/v1/events/registry/cloudevents", zot, h)
	}
	d := vendorChain(t, map[string]string{"harbor": harborToken, "cloudevents": cloudEventsToken}, harbor, zot)
	wantKept(t, d, map[string]float64{"harbor": 1, "cloudevents": 1})
}

// TestHarborCloudEventsDriveTheChain: Harbor's other payload format, CloudEvents, on the
// Harbor endpoint announces the amd64 image and on the CloudEvents endpoint the arm64 image
// (vendorChain).
func TestHarborCloudEventsDriveTheChain(t *testing.T) {
	const harborToken, cloudEventsToken = "e2e-harbor-token", "e2e-cloudevents-token"
	event := func(tag, digest, host string) map[string]any {
		e := vendorFixture(t, "harbor", "push-cloudevents.json")
		e["id"], e["time"] = "e2e-"+tag, time.Now().UTC().Format(time.RFC3339)
		data := e["data"].(map[string]any)
		data["resources"] = []any{map[string]any{"digest": digest, "tag": tag, "resource_url": host + "/acme/web:" + tag}}
		data["repository"].(map[string]any)["repo_full_name"] = "acme/web"
		return e
	}
	harbor := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		postEvent(t, d.URL+"/v1/events/registry/harbor", event(tag, digest, host),
			http.Header{"Content-Type": {"application/cloudevents+json"}, "Authorization": {"Bearer " + harborToken}})
	}
	cloudEvents := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		postEvent(t, d.URL+"/v1/events/registry/cloudevents", event(tag, digest, host),
			http.Header{"Content-Type": {"application/cloudevents+json"}, "Authorization": {"Bearer " + cloudEventsToken}})
	}
	d := vendorChain(t, map[string]string{"harbor": harborToken, "cloudevents": cloudEventsToken}, harbor, cloudEvents)
	wantKept(t, d, map[string]float64{"harbor": 1, "cloudevents": 1})
}

// TestAzureNotificationsDriveTheChain: an Azure Container Registry webhook announces the
// amd64 image, the same registry's Event Grid event (a CloudEvents batch, as Event Grid
// delivers it) the arm64 image (vendorChain).
func TestAzureNotificationsDriveTheChain(t *testing.T) {
	const acrToken, cloudEventsToken = "e2e-acr-token", "e2e-cloudevents-token"
	webhook := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		e := vendorFixture(t, "acr", "push.json")
		acrTarget(e, host, tag, digest)
		postEvent(t, d.URL+"/v1/events/registry/acr", e,
			http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + acrToken}})
	}
	eventGrid := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		batch := readFixture[[]map[string]any](t, "acr", "eventgrid-image-pushed.json")
		batch[0]["subject"] = "acme/web:" + tag
		acrTarget(batch[0]["data"].(map[string]any), host, tag, digest)
		postEvent(t, d.URL+"/v1/events/registry/cloudevents", batch,
			http.Header{"Content-Type": {"application/cloudevents-batch+json; charset=utf-8"}, "Authorization": {"Bearer " + cloudEventsToken}})
	}
	d := vendorChain(t, map[string]string{"acr": acrToken, "cloudevents": cloudEventsToken}, webhook, eventGrid)
	wantKept(t, d, map[string]float64{"acr": 1, "cloudevents": 1})
}

// acrTarget points an ACR event at tag and digest of acme/web on host.
func acrTarget(e map[string]any, host, tag, digest string) {
	target := e["target"].(map[string]any)
	target["repository"], target["tag"], target["digest"] = "acme/web", tag, digest
	target["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	e["request"].(map[string]any)["host"] = host
}

// TestCloudNotificationsDriveTheChain: Artifact Registry's Pub/Sub push announces the
// amd64 image, Amazon ECR's EventBridge event the arm64 image (vendorChain). The Pub/Sub
// message names the image by reference, here on the test registry's host; the ECR event
// names an ECR host that is not the test registry's, so the repository path alone finds
// the pipeline.
func TestCloudNotificationsDriveTheChain(t *testing.T) {
	const garToken, ecrToken = "e2e-gar-token", "e2e-ecr-token"
	gar := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		notification, err := json.Marshal(map[string]string{
			"action": "INSERT", "digest": host + "/acme/web@" + digest, "tag": host + "/acme/web:" + tag,
		})
		if err != nil {
			t.Fatal(err)
		}
		push := vendorFixture(t, "gar", "push.json")
		m := push["message"].(map[string]any)
		m["data"] = base64.StdEncoding.EncodeToString(notification)
		m["publishTime"] = time.Now().UTC().Format(time.RFC3339Nano)
		postEvent(t, d.URL+"/v1/events/registry/gar?token="+garToken, push, http.Header{"Content-Type": {"application/json"}})
	}
	ecr := func(t *testing.T, d *runningDaemon, _, tag, digest string) {
		e := vendorFixture(t, "ecr", "push.json")
		e["time"] = time.Now().UTC().Format(time.RFC3339)
		detail := e["detail"].(map[string]any)
		detail["repository-name"], detail["image-tag"], detail["image-digest"] = "acme/web", tag, digest
		postEvent(t, d.URL+"/v1/events/registry/ecr", e,
			http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Authorization": {"Bearer " + ecrToken}})
	}
	d := vendorChain(t, map[string]string{"gar": garToken, "ecr": ecrToken}, gar, ecr)
	wantKept(t, d, map[string]float64{"gar": 1, "ecr": 1})
}

// TestQuayNotificationsDriveTheChain: Quay's push notifications, which name tags but no
// digest, announce both images (vendorChain): the digests the revision records are the
// ones the merger read from the registry.
func TestQuayNotificationsDriveTheChain(t *testing.T) {
	const quayToken = "e2e-quay-token"
	quay := func(file, scheme string) announcer {
		return func(t *testing.T, d *runningDaemon, host, tag, _ string) {
			n := vendorFixture(t, "quay", file)
			n["docker_url"], n["repository"], n["updated_tags"] = scheme+host+"/acme/web", "acme/web", []string{tag}
			postEvent(t, d.URL+"/v1/events/registry/quay?token="+quayToken, n, http.Header{"Content-Type": {"application/json"}})
		}
	}
	// The arm64 notification's docker_url has a scheme, as some Quay installations send it.
	d := vendorChain(t, map[string]string{"quay": quayToken}, quay("push.json", ""), quay("push-https-docker-url.json", "https://"))
	wantKept(t, d, map[string]float64{"quay": 2})
}

// TestEventGridSchemasDriveTheChain: Azure Event Grid in its own schema, with the ACR
// event as a JSON-encoded string, announces the amd64 image on the ACR endpoint (after the
// subscription validation handshake); in the CloudEvents schema, data again a string, the
// arm64 image on the CloudEvents endpoint (vendorChain).
func TestEventGridSchemasDriveTheChain(t *testing.T) {
	const acrToken, cloudEventsToken = "e2e-acr-token", "e2e-cloudevents-token"
	stringData := func(t *testing.T, data map[string]any) string {
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	eventGrid := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		validation := readFixture[[]map[string]any](t, "acr", "eventgrid-subscription-validation.json")
		code := validation[0]["data"].(map[string]any)["validationCode"].(string)
		if got := postJSON(t, d.URL+"/v1/events/registry/acr", validation, http.Header{"Content-Type": {"application/json"}, "Aeg-Event-Type": {"SubscriptionValidation"}}); got["validationResponse"] != code {
			t.Fatalf("validation answered %v, want validationResponse %s", got, code)
		}
		batch := readFixture[[]map[string]any](t, "acr", "eventgrid-schema-string-data.json")
		var data map[string]any
		if err := json.Unmarshal([]byte(batch[0]["data"].(string)), &data); err != nil {
			t.Fatal(err)
		}
		acrTarget(data, host, tag, digest)
		batch[0]["subject"], batch[0]["data"] = "acme/web:"+tag, stringData(t, data)
		postEvent(t, d.URL+"/v1/events/registry/acr", batch,
			http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + acrToken}, "Aeg-Event-Type": {"Notification"}})
	}
	cloudEvents := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		batch := readFixture[[]map[string]any](t, "acr", "eventgrid-cloudevent-string-data.json")
		var data map[string]any
		if err := json.Unmarshal([]byte(batch[0]["data"].(string)), &data); err != nil {
			t.Fatal(err)
		}
		acrTarget(data, host, tag, digest)
		batch[0]["subject"], batch[0]["data"] = "acme/web:"+tag, stringData(t, data)
		postEvent(t, d.URL+"/v1/events/registry/cloudevents", batch,
			http.Header{"Content-Type": {"application/cloudevents-batch+json; charset=utf-8"}, "Authorization": {"Bearer " + cloudEventsToken}})
	}
	d := vendorChain(t, map[string]string{"acr": acrToken, "cloudevents": cloudEventsToken}, eventGrid, cloudEvents)
	wantKept(t, d, map[string]float64{"acr": 1, "cloudevents": 1})
	if n := testutil.ToFloat64(d.Metrics.EventsReceived.WithLabelValues("acr", "validation", "ignored", "handshake")); n != 1 {
		t.Errorf(`promoter_events_received_total{source="acr",action="validation",outcome="ignored",reason="handshake"} = %v, want 1`, n)
	}
}

// TestHarbor1AndRelayedPubSubDriveTheChain: Harbor 1.x's pushImage announces the amd64
// image, a Pub/Sub push relayed without its messageId the arm64 image (vendorChain).
func TestHarbor1AndRelayedPubSubDriveTheChain(t *testing.T) {
	const harborToken, garToken = "e2e-harbor-token", "e2e-gar-token"
	harbor := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		e := vendorFixture(t, "harbor", "push-image-v1.json")
		e["occur_at"] = time.Now().Unix()
		data := e["event_data"].(map[string]any)
		data["resources"] = []any{map[string]any{"digest": digest, "tag": tag, "resource_url": host + "/acme/web:" + tag}}
		postEvent(t, d.URL+"/v1/events/registry/harbor", e, http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}})
	}
	gar := func(t *testing.T, d *runningDaemon, host, tag, digest string) {
		notification, err := json.Marshal(map[string]string{
			"action": "INSERT", "digest": host + "/acme/web@" + digest, "tag": host + "/acme/web:" + tag,
		})
		if err != nil {
			t.Fatal(err)
		}
		push := vendorFixture(t, "gar", "push-no-message-id.json")
		m := push["message"].(map[string]any)
		m["data"] = base64.StdEncoding.EncodeToString(notification)
		m["publishTime"] = time.Now().UTC().Format(time.RFC3339Nano)
		postEvent(t, d.URL+"/v1/events/registry/gar?token="+garToken, push, http.Header{"Content-Type": {"application/json"}})
	}
	d := vendorChain(t, map[string]string{"harbor": harborToken, "gar": garToken}, harbor, gar)
	wantKept(t, d, map[string]float64{"harbor": 1, "gar": 1})
}

// postJSON posts body and decodes a 200 answer's JSON object.
func postJSON(t *testing.T, url string, body any, header http.Header) map[string]any {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %v (%v)", url, resp.Status, got, err)
	}
	return got
}

func basicCredentials(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}
