package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
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

// TestNATSKilledWhileRevisionsFlow runs the daemon on a nats-server in its own process and
// SIGKILLs it (same store directory and port on restart) while revisions are pushed: some
// pushes land while NATS is down, some merges are in flight when it dies. The registry
// keeps redelivering what got no 2xx. Afterwards every revision is merged exactly once,
// from the digests the registry holds under its arch tags.
func TestNATSKilledWhileRevisionsFlow(t *testing.T) {
	const revisions, killEvery = 24, 5
	nats := testenv.StartNATSProcess(t)
	port := testenv.FreePort(t)
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	d := startDaemon(t, appConfig(t, nats.URL, staging))
	relay := startStatusRelay(t, d.URL+"/v1/events/registry")
	testenv.StartRegistry(t, localregistry.WithPort(port), localregistry.WithNotify(relay.URL, notifyHeaders()))

	created := time.Unix(0, 0)
	kills := 0
	var lastRestart time.Time
	for i := range revisions {
		pushRevision(t, staging, rev("k", i), created)
		switch i % killEvery {
		case 1: // the merge of this revision may be in flight
			nats.Kill(t)
			kills++
		case 2: // this revision was pushed with NATS down: its notifications get 503s
			nats.Restart(t, 60*time.Second)
			lastRestart = time.Now()
		}
	}
	if lastRestart.IsZero() || kills < 4 {
		t.Fatalf("only %d kills", kills)
	}
	nats.WaitHealthy(t, 60*time.Second) // in case the loop ended with NATS down
	waitAllPromoted(t, d, staging, "k", revisions, 120*time.Second)
	recovery := time.Since(lastRestart)

	lost := 0
	for i := range revisions {
		if !indexMatchesArchTags(t, d, staging, rev("k", i)) {
			lost++
		}
	}
	merged := testutil.ToFloat64(d.Metrics.Merges.WithLabelValues("merged"))
	t.Logf("revisions=%d kills=%d lost=%d index writes=%v notifications refused and redelivered=%d recovery after the last restart=%s",
		revisions, kills, lost, merged, relay.refused(), recovery.Round(time.Millisecond))
	if lost != 0 {
		t.Errorf("%d of %d revisions lost or merged wrong", lost, revisions)
	}
	if merged != revisions {
		t.Errorf("indexes written: got %v, want %d (one per revision)", merged, revisions)
	}
}

// TestNATSClusterLosesANode runs the daemon on a 3-node JetStream cluster of separate
// processes with the default replicas (3 on an external cluster) and SIGKILLs the node
// leading the events stream halfway: revisions keep merging, nothing is lost.
func TestNATSClusterLosesANode(t *testing.T) {
	const revisions = 24
	nodes := testenv.StartNATSProcessCluster(t, 3)
	urls := testenv.NATSURLs(nodes)
	port := testenv.FreePort(t)
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	d := startDaemon(t, appConfig(t, urls, staging))
	relay := startStatusRelay(t, d.URL+"/v1/events/registry")
	testenv.StartRegistry(t, localregistry.WithPort(port), localregistry.WithNotify(relay.URL, notifyHeaders()))

	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{bus.StreamEvents, bus.StreamBuilds, "KV_" + bus.BucketRevisions} {
		if info := streamInfo(t, js, s); info.Config.Replicas != 3 {
			t.Errorf("%s replicas: got %d, want 3 (the default on an external cluster)", s, info.Config.Replicas)
		}
	}

	created := time.Unix(0, 0)
	for i := range revisions / 2 {
		pushRevision(t, staging, rev("c", i), created)
	}
	leader := streamInfo(t, js, bus.StreamEvents).Cluster.Leader
	var killed *testenv.NATSProcess
	for _, n := range nodes {
		if n.Name == leader {
			killed = n
		}
	}
	if killed == nil {
		t.Fatalf("no node named %q leads %s", leader, bus.StreamEvents)
	}
	killed.Kill(t)
	killedAt := time.Now()
	for i := revisions / 2; i < revisions; i++ {
		pushRevision(t, staging, rev("c", i), created)
	}
	waitAllPromoted(t, d, staging, "c", revisions, 120*time.Second)
	settled := time.Since(killedAt)

	lost := 0
	for i := range revisions {
		if !indexMatchesArchTags(t, d, staging, rev("c", i)) {
			lost++
		}
	}
	newLeader := streamInfo(t, js, bus.StreamEvents).Cluster.Leader
	t.Logf("revisions=%d killed=%s (leader of %s) new leader=%s lost=%d notifications refused and redelivered=%d all promoted %s after the kill",
		revisions, leader, bus.StreamEvents, newLeader, lost, relay.refused(), settled.Round(time.Millisecond))
	if lost != 0 {
		t.Errorf("%d of %d revisions lost or merged wrong", lost, revisions)
	}
	if merged := testutil.ToFloat64(d.Metrics.Merges.WithLabelValues("merged")); merged != revisions {
		t.Errorf("indexes written: got %v, want %d (one per revision)", merged, revisions)
	}
}

// statusRelay forwards registry notifications to the daemon and counts the ones not
// acknowledged with a 2xx before the registry gave up waiting; the registry delivers
// those again.
type statusRelay struct {
	URL    string
	mu     sync.Mutex
	failed int
}

func startStatusRelay(t *testing.T, target string) *statusRelay {
	t.Helper()
	r := &statusRelay{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		code := http.StatusBadGateway
		fwd, err := http.NewRequestWithContext(req.Context(), http.MethodPost, target, req.Body)
		if err == nil {
			fwd.Header = req.Header.Clone()
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(fwd); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
		}
		if code/100 != 2 {
			r.mu.Lock()
			r.failed++
			r.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *statusRelay) refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func rev(prefix string, i int) string { return fmt.Sprintf("%s%02d", prefix, i) }

// pushRevision pushes the two arch tags of one revision.
func pushRevision(t *testing.T, staging, revision string, created time.Time) {
	t.Helper()
	testenv.Push(t, staging+":"+revision+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	testenv.Push(t, staging+":"+revision+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
}

// waitAllPromoted waits, within one overall bound, until every revision prefixNN is promoted.
func waitAllPromoted(t *testing.T, d *runningDaemon, staging, prefix string, n int, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for i := range n {
		left := time.Until(deadline)
		if left <= 0 {
			left = time.Millisecond
		}
		d.waitPhase(t, "app", rev(prefix, i), left, types.PhasePromoted)
	}
}

// indexMatchesArchTags reports whether the revision's state names the index the registry
// serves under the revision tag, and that index's children are exactly the digests the
// registry serves under the arch tags, in platform order.
func indexMatchesArchTags(t *testing.T, d *runningDaemon, staging, revision string) bool {
	t.Helper()
	r := d.revision(t, "app", revision)
	head := func(tag string) string {
		ref, err := name.ParseReference(staging+":"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref)
		if err != nil {
			t.Errorf("%s:%s: %v", staging, tag, err)
			return ""
		}
		return desc.Digest.String()
	}
	if r == nil || r.Index == "" || r.Index != head(revision) {
		t.Errorf("%s: state %+v, registry index %s", revision, r, head(revision))
		return false
	}
	ref, _ := name.ParseReference(staging+"@"+r.Index, name.Insecure)
	idx, err := remote.Index(ref)
	if err != nil {
		t.Errorf("%s: reading index: %v", revision, err)
		return false
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Errorf("%s: %v", revision, err)
		return false
	}
	want := []string{head(revision + "-amd64"), head(revision + "-arm64")}
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Digest.String())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: index children %v, registry arch tags %v", revision, got, want)
		return false
	}
	return true
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
}
