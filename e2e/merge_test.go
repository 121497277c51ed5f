package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// tee forwards registry notifications to the daemon and keeps each body, so a test can
// deliver one again exactly as the registry sent it.
type tee struct {
	target string
	mu     sync.Mutex
	bodies [][]byte
}

func (t *tee) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	t.mu.Lock()
	t.bodies = append(t.bodies, body)
	t.mu.Unlock()
	resp, err := forward(t.target, r.Header, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.WriteHeader(resp)
}

func forward(url string, h http.Header, body []byte) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, nil
}

func (t *tee) last() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bodies[len(t.bodies)-1]
}

// TestRegistryPushesBecomeAnIndex is issue 3's end-to-end test: a real registry notifies a
// real daemon (embedded JetStream), which merges, refuses a wrong platform, ignores
// duplicates, and with notifications lost still merges through its reconciler. The app
// pipeline follows a repository (its index names it as its source) but builds none of
// these images: CI signs them, and its verify policy accepts that key.
func TestRegistryPushesBecomeAnIndex(t *testing.T) {
	port := testenv.FreePort(t)
	quietPort := testenv.FreePort(t) // a registry that sends no notifications
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	quiet := "127.0.0.1:" + itoa(quietPort) + "/team/quiet"
	ciPub, signedPush := ciSigner(t, t.TempDir())
	d := startDaemon(t, newDaemonConfig(t, withReconcile("1s"),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app"}, Platforms: bothArches, Staging: staging,
			Verify: trusting(ciPub),
		}),
		withPipeline(pipelineConfig{Name: "quiet", Platforms: bothArches, Staging: quiet})))
	relay := &tee{target: d.URL + "/v1/events/registry"}
	sink := httptest.NewServer(relay)
	defer sink.Close()
	testenv.StartRegistry(t, localregistry.WithPort(port), localregistry.WithNotify(sink.URL, notifyHeaders()))
	testenv.StartRegistry(t, localregistry.WithPort(quietPort))

	created := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	// Speed is the benchmark's business (hack/bench.sh, README "Performance"); here the
	// wait is only bounded so that a lost event fails the test instead of hanging it.
	t.Run("two arch pushes give a valid index", func(t *testing.T) {
		signedPush(t, staging+":r1-amd64", testenv.PlatformImage(t, "linux/amd64", created))
		signedPush(t, staging+":r1-arm64", testenv.BuildKitIndex(t, testenv.PlatformImage(t, "linux/arm64", created)))
		pushed := time.Now()
		ref, _ := name.ParseReference(staging+":r1", name.Insecure)
		err := testenv.WaitFor(30*time.Second, func() error {
			_, err := remote.Head(ref)
			return err
		})
		if err != nil {
			t.Fatalf("no index 30s after the last push (%v)\nlogs:\n%s", err, d.Logs.String())
		}
		t.Logf("index readable %s after the last push", time.Since(pushed))
		idx := wantMergedIndex(t, ref)
		r := d.waitPhase(t, "app", "r1", 30*time.Second, types.PhasePromoted)
		if r.Index != testenv.Digest(t, idx) {
			t.Errorf("state index %s, registry %s", r.Index, testenv.Digest(t, idx))
		}
		if !d.Logs.Contains(`"msg":"merged"`, `"revision":"r1"`, r.Index, `"repo":"`+staging+`"`) {
			t.Errorf("no merge log line with repo, revision and digest:\n%s", d.Logs.String())
		}
	})

	t.Run("a redelivered notification changes nothing; another image under a merged tag is reported", func(t *testing.T) {
		before := d.revision(t, "app", "r1")
		merges := testutil.ToFloat64(d.Metrics.Merges.WithLabelValues("merged"))
		status, err := forward(d.URL+"/v1/events/registry", http.Header{
			"Authorization": {"Bearer " + registryToken},
			"Content-Type":  {"application/vnd.docker.distribution.events.v2+json"},
		}, relay.last())
		if err != nil || status != http.StatusOK {
			t.Fatalf("redelivery: %d %v", status, err)
		}
		// A different image under a merged arch tag (PlatformImage is random each call).
		testenv.Push(t, staging+":r1-amd64", testenv.PlatformImage(t, "linux/amd64", created))
		// One revision's pushes are handled in order: once the new image is reported, the
		// redelivery before it was handled too.
		after := d.waitPhase(t, "app", "r1", 30*time.Second, types.PhaseConflicted)
		if after.Index != before.Index {
			t.Fatalf("index changed: %s → %s", before.Index, after.Index)
		}
		if got := testutil.ToFloat64(d.Metrics.Merges.WithLabelValues("merged")); got != merges {
			t.Errorf("merged again: %v → %v", merges, got)
		}
		if after.Phase != types.PhaseConflicted || !strings.Contains(after.Reason, "r1-amd64 now points at") {
			t.Errorf("a different image under a merged arch tag must be reported: %+v", after)
		}
		if testutil.ToFloat64(d.Metrics.ImmutabilityViolations) != 1 {
			t.Errorf("violations: %v", testutil.ToFloat64(d.Metrics.ImmutabilityViolations))
		}
	})

	t.Run("re-pushing the identical image changes nothing", func(t *testing.T) {
		img := testenv.PlatformImage(t, "linux/amd64", created)
		signedPush(t, staging+":r5-amd64", img)
		signedPush(t, staging+":r5-arm64", testenv.PlatformImage(t, "linux/arm64", created))
		r := d.waitPhase(t, "app", "r5", 30*time.Second, types.PhasePromoted)
		testenv.Push(t, staging+":r5-amd64", img)
		// The scenario, not a wait for an event: a no-op leaves no trace to wait for (the
		// registry need not even notify an identical manifest), so this quiet period is
		// the window in which a wrong handling of the re-push would show.
		time.Sleep(500 * time.Millisecond)
		if again := d.revision(t, "app", "r5"); !again.Updated.Equal(r.Updated) || again.Phase != types.PhasePromoted {
			t.Errorf("state changed: %+v → %+v", r, again)
		}
	})

	t.Run("a wrong platform under an arch tag is refused with the reason", func(t *testing.T) {
		signedPush(t, staging+":r2-amd64", testenv.PlatformImage(t, "linux/arm64", created))
		signedPush(t, staging+":r2-arm64", testenv.PlatformImage(t, "linux/arm64", created))
		r := d.waitPhase(t, "app", "r2", 30*time.Second, types.PhaseFailed)
		wantReason(t, r, "r2-amd64", "expected platform linux/amd64", "says linux/arm64")
		if got := testutil.ToFloat64(d.Metrics.Merges.WithLabelValues("failed")); got != 1 {
			t.Errorf("promoter_merges_total{outcome=failed} = %v", got)
		}
		// The phase gauge follows on the next reconcile (every second here).
		err := testenv.WaitFor(5*time.Second, func() error {
			if got := testutil.ToFloat64(d.Metrics.Revisions.WithLabelValues("failed")); got != 1 {
				return fmt.Errorf("promoter_revisions{state=failed} = %v, want 1", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Logs.Contains("platform mismatch", "r2-amd64") {
			t.Errorf("no log line with the reason:\n%s", d.Logs.String())
		}
		ref, _ := name.ParseReference(staging+":r2", name.Insecure)
		if _, err := remote.Head(ref); err == nil {
			t.Error("an index was pushed for a refused revision")
		}
	})

	t.Run("with notifications off the reconciler merges", func(t *testing.T) {
		testenv.Push(t, quiet+":q1-amd64", testenv.PlatformImage(t, "linux/amd64", created))
		testenv.Push(t, quiet+":q1-arm64", testenv.PlatformImage(t, "linux/arm64", created))
		r := d.waitPhase(t, "quiet", "q1", 30*time.Second, types.PhasePromoted)
		ref, _ := name.ParseReference(quiet+":q1", name.Insecure)
		desc, err := remote.Head(ref)
		if err != nil || desc.Digest.String() != r.Index {
			t.Fatalf("quiet index: %v %v", desc, err)
		}
	})
}

// wantMergedIndex is the index at ref, failing t unless it is valid, holds r1's amd64
// and arm64 images (and the arm64 build's attestation), and carries r1's annotations.
func wantMergedIndex(t *testing.T, ref name.Reference) v1.ImageIndex {
	t.Helper()
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 3 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("children: %+v", im.Manifests)
	}
	if im.Annotations["org.opencontainers.image.revision"] != "r1" || im.Annotations["org.opencontainers.image.source"] != "https://git.example/team/app" ||
		im.Annotations["org.opencontainers.image.created"] != "2026-11-20T08:00:00Z" {
		t.Errorf("annotations: %v", im.Annotations)
	}
	return idx
}

// wantReason fails t unless r's reason names each of want.
func wantReason(t *testing.T, r *types.Revision, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.Reason, w) {
			t.Errorf("reason %q lacks %q", r.Reason, w)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPromotionNeverMovesATag: a destination tag that already holds another image is left
// alone; the revision is conflicted with a reason naming both digests, and counted.
func TestPromotionNeverMovesATag(t *testing.T) {
	port := testenv.FreePort(t)
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	prod := testenv.StartRegistry(t)
	dest := prod.Host + "/team/app"
	d := startDaemon(t, newDaemonConfig(t, withReconcile("1h"),
		withPipeline(pipelineConfig{
			Name: "app", Platforms: []string{"linux/amd64"}, Staging: staging,
			Promote: []promoteConfig{{To: dest}},
		})))
	testenv.StartRegistry(t, localregistry.WithPort(port), localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))

	squatter := testenv.PlatformImage(t, "linux/amd64", time.Unix(0, 0))
	testenv.Push(t, dest+":r9", squatter)
	testenv.Push(t, staging+":r9-amd64", testenv.PlatformImage(t, "linux/amd64", time.Unix(0, 0)))
	r := d.waitPhase(t, "app", "r9", 30*time.Second, types.PhaseConflicted)
	if !strings.Contains(r.Reason, testenv.Digest(t, squatter)) || !strings.Contains(r.Reason, r.Index) {
		t.Errorf("reason %q does not name both digests (%s, %s)", r.Reason, testenv.Digest(t, squatter), r.Index)
	}
	ref, _ := name.ParseReference(dest+":r9", name.Insecure)
	if got, err := remote.Head(ref); err != nil || got.Digest.String() != testenv.Digest(t, squatter) {
		t.Errorf("destination tag moved: %v %v", got, err)
	}
	if v := testutil.ToFloat64(d.Metrics.ImmutabilityViolations); v != 1 {
		t.Errorf("violations = %v", v)
	}
}

// TestTwoReplicasWriteOneIndex runs two daemons on one NATS server, with the registry
// notifying both: every event arrives twice, JetStream keeps it once, the replicas share
// the consumers, and each revision is merged exactly once.
func TestTwoReplicasWriteOneIndex(t *testing.T) {
	nats := testenv.StartNATS(t)
	port := testenv.FreePort(t)
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	cfg := appConfig(t, nats.URL, staging)
	a, b := startDaemon(t, cfg), startDaemon(t, cfg)
	testenv.StartRegistry(t, localregistry.WithPort(port),
		localregistry.WithNotify(a.URL+"/v1/events/registry", notifyHeaders()),
		localregistry.WithNotify(b.URL+"/v1/events/registry", notifyHeaders()))

	const revisions = 10
	created := time.Unix(0, 0)
	for i := range revisions {
		rev := "p" + itoa(i)
		testenv.Push(t, staging+":"+rev+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
		testenv.Push(t, staging+":"+rev+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	}
	for i := range revisions {
		a.waitPhase(t, "app", "p"+itoa(i), 30*time.Second, types.PhasePromoted)
	}
	merged := testutil.ToFloat64(a.Metrics.Merges.WithLabelValues("merged")) + testutil.ToFloat64(b.Metrics.Merges.WithLabelValues("merged"))
	if merged != revisions {
		t.Errorf("indexes written by both replicas: %v, want %d", merged, revisions)
	}
	if testutil.ToFloat64(a.Metrics.Merges.WithLabelValues("merged")) == 0 || testutil.ToFloat64(b.Metrics.Merges.WithLabelValues("merged")) == 0 {
		t.Logf("one replica did all merges (a=%v b=%v): allowed, the consumer decides",
			testutil.ToFloat64(a.Metrics.Merges.WithLabelValues("merged")), testutil.ToFloat64(b.Metrics.Merges.WithLabelValues("merged")))
	}
}

// TestNATSRestartLosesNothing stops NATS while pushes happen: the daemon answers 503 and
// reports not ready, the registry keeps retrying, and once NATS is back the revision merges.
func TestNATSRestartLosesNothing(t *testing.T) {
	nats := testenv.StartNATS(t)
	port := testenv.FreePort(t)
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	d := startDaemon(t, appConfig(t, nats.URL, staging))
	testenv.StartRegistry(t, localregistry.WithPort(port), localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))

	nats.Shutdown()
	created := time.Unix(0, 0)
	testenv.Push(t, staging+":n1-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	testenv.Push(t, staging+":n1-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	err := testenv.WaitFor(10*time.Second, func() error {
		resp, err := http.Get(d.URL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz answered %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("daemon still reports ready with NATS down: %v", err)
	}
	// The registry's first deliveries fail meanwhile: the daemon answers them 503 (not
	// stored), so the registry must deliver them again once NATS is back.
	err = testenv.WaitFor(10*time.Second, func() error {
		if n := testutil.ToFloat64(d.Metrics.EventResponses.WithLabelValues("registry", "503")); n < 1 {
			return errors.New("no notification answered 503 yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the registry's deliveries did not fail with NATS down: %v", err)
	}

	nats.Restart(t)
	d.waitReady(t)
	r := d.waitPhase(t, "app", "n1", 30*time.Second, types.PhasePromoted)
	if r.Index == "" {
		t.Fatalf("state: %+v", r)
	}
	if !d.Logs.Contains("nats disconnected") {
		t.Errorf("the disconnect was not logged")
	}
}

// appConfig is a daemon on an external NATS with one two-platform merge-only pipeline, no
// signing and no destinations, merging in staging whatever CI pushes.
func appConfig(t testing.TB, natsURL, staging string) string {
	t.Helper()
	return newDaemonConfig(t, withNATS(natsURL), withReconcile("1h"),
		withPipeline(pipelineConfig{Name: "app", Platforms: bothArches, Staging: staging}))
}
