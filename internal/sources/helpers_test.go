package sources

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus/bustest"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// testNow is the poller's clock in tests, so SourceChanged.Received is predictable.
var testNow = time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)

func clock() time.Time { return testNow }

// published is the publishes to pub so far and the source changes it stored, in order.
func published(t *testing.T, pub *bustest.Recorder) (calls int, stored []types.SourceChanged) {
	t.Helper()
	calls, msgs := pub.Snapshot()
	for _, m := range msgs {
		ev, ok := m.Value.(types.SourceChanged)
		if !ok || m.Subject != types.SubjectSourceChanged || m.MsgID != ev.MsgID() {
			t.Fatalf("published %T on %s as %q, want a SourceChanged on %s under its MsgID", m.Value, m.Subject, m.MsgID, types.SubjectSourceChanged)
		}
		stored = append(stored, ev)
	}
	return calls, stored
}

// polled is a pipeline following branch of repo, polled every interval.
func polled(name, repo, branch string, interval time.Duration) types.Pipeline {
	return types.Pipeline{
		Name:      name,
		Source:    types.Source{Repo: repo, Branch: branch, Poll: interval},
		Platforms: []types.Platform{types.MustPlatform("linux/amd64")},
		Staging:   types.Repository("staging.example/acme/" + name),
		ArchTag:   types.DefaultArchTag,
	}
}

// changed is the event a poll of pipeline name publishes for revision.
func changed(name, repo, branch, revision string) types.SourceChanged {
	return types.SourceChanged{Pipeline: name, Repo: repo, Ref: "refs/heads/" + branch, Revision: revision, Received: testNow}
}

// newPoller is New, failing the test on error.
func newPoller(t *testing.T, pub *bustest.Recorder, pipelines []types.Pipeline, opts ...Option) *Poller {
	t.Helper()
	p, err := New(pub, pipelines, append([]Option{WithClock(clock)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor waits until cond holds; the deadline only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := testenv.WaitFor(30*time.Second, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("gave up waiting for %s", what)
	}
}

// emptyRepo creates repository NAME.git without a commit on srv and returns its git:// URL.
func emptyRepo(t *testing.T, srv *testenv.GitServer, name string) string {
	t.Helper()
	if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(srv.Root, name+".git")).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	return "git://" + srv.Host + "/" + name + ".git"
}

// unsetenv removes key from the environment until the test ends.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // restores the value when the test ends
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}
