package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestMergeOnlyPipeline is issue 12's merge-only mode against real registries, real NATS
// JetStream and the cosign CLI: pipelines without a source, whose per-arch images CI pushes
// to staging under <sha>-amd64 and <sha>-arm64 (in-process here, as a CI job's buildah or
// docker/build-push-action would push them: a plain image and a BuildKit index with its
// provenance). With the staging registry's notifications wired to the daemon the revision
// is merged, signed and promoted; without notifications the reconciler does the same. The
// promoted index is the one merged from exactly the pushed images, the cosign CLI verifies
// it and each child at the destination, a source webhook naming the revision changes
// nothing, and no build request was ever dispatched.
func TestMergeOnlyPipeline(t *testing.T) {
	const genericToken = "e2e-generic-token"
	env := newStaged(t, "acme/app")
	n, staging, dest := env.NATS, env.Staging, env.Dest
	quietPort := testenv.FreePort(t)
	quiet := fmt.Sprintf("127.0.0.1:%d/acme/batch", quietPort) // its registry notifies nobody

	d := env.start(t, newDaemonConfig(t, withNATS(n.URL), withToken("generic", genericToken), withSigningKey(env.Key, "pw"), withReconcile("2s"),
		withPipeline(pipelineConfig{
			Name: "app", Platforms: bothArches, Staging: staging,
			Sign: true, Verify: acceptUnverified(), Promote: signedTo(dest),
		}),
		withPipeline(pipelineConfig{Name: "batch", Platforms: bothArches, Staging: quiet, Promote: []promoteConfig{{To: dest + "-batch"}}})))
	testenv.StartRegistry(t, localregistry.WithPort(quietPort))

	const sha = "9e1c2b7d4a5f60718293a4b5c6d7e8f901234567"
	// A source push naming the revision, as a CI system that also calls the generic
	// endpoint would send: no pipeline follows a repository, so it is ignored.
	genericSourcePush(t, d.URL, genericToken, "https://git.example/acme/app.git", sha)

	created := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	amd := testenv.PlatformImage(t, "linux/amd64", created)
	arm := testenv.PlatformImage(t, "linux/arm64", created)
	testenv.Push(t, staging+":"+sha+"-amd64", amd)
	testenv.Push(t, staging+":"+sha+"-arm64", testenv.BuildKitIndex(t, arm))

	r := d.waitPhase(t, "app", sha, 2*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
	if r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[dest].Digest != r.Index {
		t.Fatalf("revision: %+v", r)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if r.Platforms[p].Build != "" {
			t.Errorf("%s: build %q recorded for a merge-only pipeline", p, r.Platforms[p].Build)
		}
	}
	// The index in staging and at the destination is the one the state names, and holds
	// the images CI pushed.
	for _, repo := range []string{staging, dest} {
		ref, err := name.ParseReference(repo+":"+sha, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if desc.Digest.String() != r.Index {
			t.Errorf("%s is %s, the merged index is %s", ref, desc.Digest, r.Index)
		}
	}
	kids := testenv.IndexChildren(t, dest+":"+sha)
	if kids["linux/amd64"] != testenv.Digest(t, amd) || kids["linux/arm64"] != testenv.Digest(t, arm) {
		t.Errorf("promoted children %v, want the pushed linux/amd64 %s and linux/arm64 %s", kids, testenv.Digest(t, amd), testenv.Digest(t, arm))
	}
	cosign := testenv.Tool(t, "cosign")
	for _, dg := range []string{r.Index, kids["linux/amd64"], kids["linux/arm64"]} {
		cosignVerify(t, cosign, env.Pub, dest+"@"+dg)
	}

	t.Run("without notifications the reconciler merges and promotes", func(t *testing.T) {
		testenv.Push(t, quiet+":"+sha+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
		testenv.Push(t, quiet+":"+sha+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
		r := d.waitPhase(t, "batch", sha, 2*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
		if r.Phase != types.PhasePromoted || r.Promotions[dest+"-batch"].Digest != r.Index {
			t.Fatalf("revision: %+v", r)
		}
	})

	// Nothing was dispatched: no request counted, none ever stored on the builds stream.
	if got := testutil.CollectAndCount(d.Metrics.BuildsDispatched); got != 0 {
		t.Errorf("promoter_builds_dispatched_total has %d series, want none", got)
	}
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if info := streamInfo(t, js, bus.StreamBuilds); info.State.LastSeq != 0 {
		t.Errorf("%s: %d build requests were stored (last sequence %d), want none", bus.StreamBuilds, info.State.Msgs, info.State.LastSeq)
	}
	if !d.Logs.Contains("event ignored", "no pipeline follows") {
		t.Errorf("the generic source push was not ignored:\n%s", d.Logs.String())
	}
}

// genericSourcePush sends the generic source webhook of a push of revision to repo's main
// branch, with bearer token, and fails t unless the daemon answers 200.
func genericSourcePush(t *testing.T, daemonURL, token, repo, revision string) {
	t.Helper()
	body := fmt.Sprintf(`{"repo": %q, "ref": "main", "revision": %q}`, repo, revision)
	req, _ := http.NewRequest(http.MethodPost, daemonURL+"/v1/events/source/generic", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("generic source push: %s", resp.Status)
	}
}
