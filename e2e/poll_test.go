package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestSourcePollBuildsWithoutWebhooks is issue 12's source reconciliation: a pipeline with
// source.poll follows a git repository served on loopback, and no webhook is ever sent.
// The commit made before the daemon started (its webhook lost while no daemon ran) is
// found by the poll on start, a commit pushed while it runs by a later poll; each is
// built by the local executor, merged, signed and promoted. A webhook for a commit the
// poller reported is then a duplicate, and each commit was dispatched once.
func TestSourcePollBuildsWithoutWebhooks(t *testing.T) {
	gitsrv := testenv.StartGitServer(t)
	repo, first := gitsrv.CreateRepo(t, "app", map[string]string{"Dockerfile": "FROM scratch\n"})
	stagingPort := testenv.FreePort(t)
	staging := fmt.Sprintf("127.0.0.1:%d/acme/app", stagingPort)
	dest := testenv.StartRegistry(t).Host + "/acme/app"
	dir := t.TempDir()
	keyPath, _ := writeKeyPair(t, dir, "pw")
	src := buildContext(t, dir)

	// The minimum interval the configuration accepts: the second commit waits for it. One
	// platform: the local executor pushes two at the same instant, and the merger can then
	// record one arch tag's absence over the other's digest (two notifications, each
	// handled before the other's tag is written), which only the reconciler repairs.
	d := startDaemon(t, newDaemonConfig(t, withGitHubSecret(githubSecret), withSigningKey(keyPath, "pw"), withReconcile("1h"),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: repo, Branch: "main", Poll: sources.MinInterval.String()}, Platforms: []string{"linux/amd64"},
			Build: &buildConfig{Executor: "local", Dir: src}, Staging: staging,
			Sign: true, Promote: signedTo(dest),
		})))
	// Started after the daemon, whose address it notifies: a dispatch that finds it not
	// up yet is retried by the bus.
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))

	promoted := func(t *testing.T, rev string) {
		t.Helper()
		r := d.waitPhase(t, "app", rev, 3*time.Minute, types.PhasePromoted)
		if !r.Signed || r.Promotions[dest].Digest != r.Index {
			t.Fatalf("state of %s: %+v", rev, r)
		}
	}
	t.Run("the head when the daemon starts is built", func(t *testing.T) { promoted(t, first) })
	var second string
	t.Run("a commit pushed while it runs is built", func(t *testing.T) {
		second = gitsrv.Commit(t, "app", map[string]string{"hello.txt": "second\n"})
		promoted(t, second)
	})
	t.Run("a webhook for a polled commit is a duplicate", func(t *testing.T) {
		if second == "" {
			t.Fatal("the previous step made no second commit to send a webhook for")
		}
		got := githubPush(t, d.URL, repo, "late-delivery", second)
		if got != (events.Summary{Duplicates: 1}) {
			t.Errorf("webhook summary %+v, want one duplicate", got)
		}
		if n := testutil.ToFloat64(d.Metrics.SourcePolls.WithLabelValues(string(sources.OutcomeNew))); n != 2 {
			t.Errorf("promoter_source_polls_total{outcome=new}: got %v, want 2 (one per commit)", n)
		}
		if n := testutil.ToFloat64(d.Metrics.BuildsDispatched.WithLabelValues("linux/amd64", "dispatched")); n != 2 {
			t.Errorf("promoter_builds_dispatched_total{linux/amd64,dispatched}: got %v, want 2 (one per commit)", n)
		}
	})
}
