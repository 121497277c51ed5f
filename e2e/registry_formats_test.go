package e2e

import (
	"bytes"
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
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "internal", "events", "testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", filepath.Join(elem...), err)
	}
	return m
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

// TestVendorNotificationsDriveTheChain: a registry that is not distribution notifies the
// daemon in its own format. Per-arch images are pushed to a real registry that notifies
// nobody; Harbor's Default payload announces the amd64 image, Zot's binary-mode CloudEvent
// the arm64 image, with the fixtures' shapes and this run's repository, tags and digests.
// The revision is merged and promoted to the destination, by the digests the registry
// holds.
func TestVendorNotificationsDriveTheChain(t *testing.T) {
	const harborToken, cloudEventsToken = "e2e-harbor-token", "e2e-cloudevents-token"
	staging := testenv.StartRegistry(t)
	prod := testenv.StartRegistry(t)
	stagingRepo, prodRepo := staging.Host+"/acme/web", prod.Host+"/acme/web"
	d := startDaemon(t, yamlf(`
auth:
	harbor: {token: %s}
	cloudevents: {token: %s}
reconcileInterval: 1h
pipelines:
	- name: web
		source: {repo: https://git.example/acme/web}
		platforms: [linux/amd64, linux/arm64]
		staging: %s
		promote:
			- to: %s
`, harborToken, cloudEventsToken, stagingRepo, prodRepo))

	const rev = "c0ffee1"
	created := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	// One image at a time: the merger reads every arch tag from the registry, so with both
	// there the first event would merge, and the second would prove nothing.
	testenv.Push(t, stagingRepo+":"+rev+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	amd := digestOf(t, stagingRepo+":"+rev+"-amd64")

	harbor := vendorFixture(t, "harbor", "push-default.json")
	harbor["occur_at"] = time.Now().Unix()
	data := harbor["event_data"].(map[string]any)
	data["resources"] = []any{map[string]any{"digest": amd, "tag": rev + "-amd64", "resource_url": stagingRepo + ":" + rev + "-amd64"}}
	data["repository"].(map[string]any)["repo_full_name"] = "acme/web"
	postEvent(t, d.URL+"/v1/events/registry/harbor", harbor,
		http.Header{"Content-Type": {"application/json"}, "Authorization": {harborToken}})

	if r := d.waitPhase(t, "web", rev, 30*time.Second, types.PhaseWaiting); r.Platforms["linux/amd64"].Digest != amd || r.Platforms["linux/arm64"].Digest != "" {
		t.Fatalf("after Harbor's event: %+v, want amd64 %s and no arm64 yet", r.Platforms, amd)
	}

	testenv.Push(t, stagingRepo+":"+rev+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	arm := digestOf(t, stagingRepo+":"+rev+"-arm64")

	zot := vendorFixture(t, "cloudevents", "zot-image-updated.json")
	zot["name"], zot["reference"], zot["digest"] = "acme/web", rev+"-arm64", arm
	var headers map[string]string
	b, err := os.ReadFile(filepath.Join("..", "internal", "events", "testdata", "cloudevents", "zot-image-updated.headers.json"))
	if err != nil || json.Unmarshal(b, &headers) != nil {
		t.Fatalf("zot headers: %v", err)
	}
	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	h.Set("Ce-Id", "e2e-"+rev+"-arm64")
	h.Set("Ce-Time", time.Now().UTC().Format(time.RFC3339Nano))
	h.Set("Authorization", "Basic "+basicCredentials("zot", cloudEventsToken))
	postEvent(t, d.URL+"/v1/events/registry/cloudevents", zot, h)

	r := d.waitPhase(t, "web", rev, 60*time.Second, types.PhasePromoted)
	if r.Platforms["linux/amd64"].Digest != amd || r.Platforms["linux/arm64"].Digest != arm {
		t.Errorf("merged %+v, want amd64 %s and arm64 %s", r.Platforms, amd, arm)
	}
	if got := digestOf(t, prodRepo+":"+rev); got != r.Index {
		t.Errorf("%s:%s is %s, want the merged index %s", prodRepo, rev, got, r.Index)
	}
	for _, source := range []string{"harbor", "cloudevents"} {
		if n := testutil.ToFloat64(d.Metrics.EventsReceived.WithLabelValues(source, "push", "kept")); n != 1 {
			t.Errorf("promoter_events_received_total{source=%q,action=push,outcome=kept} = %v, want 1", source, n)
		}
	}
}

func basicCredentials(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}
