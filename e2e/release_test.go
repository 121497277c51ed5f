package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestGitTagPromotesARelease is issue 12's release tags end to end: arch images pushed to a
// real staging registry (signed by CI with its own key, which the pipeline's verify policy
// lists: the pipeline follows a repository, and promoter built none of them) are merged,
// signed and promoted by a real daemon; a GitHub push webhook of the annotated git tag
// v1.2.3 (GitHub's payload, signed with the secret) makes app:v1.2.3 at the destination
// the revision's signed index, which the cosign CLI verifies there, without a build. The
// same tag pushed again for another commit is refused as immutable, and a tag pushed
// before its commit's images waits for them.
func TestGitTagPromotesARelease(t *testing.T) {
	port := testenv.FreePort(t)
	staging := "127.0.0.1:" + itoa(port) + "/team/app"
	dest := testenv.StartRegistry(t).Host + "/team/app"
	keyPath, pubPath := writeKeyPair(t, t.TempDir(), "pw")
	ciPub, signedPush := ciSigner(t, t.TempDir())
	d := startDaemon(t, newDaemonConfig(t, withGitHubSecret(githubSecret), withSigningKey(keyPath, "pw"), withReconcile("1h"),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: "https://git.example/team/app", ReleaseTags: []string{"v*"}},
			Platforms: bothArches, Staging: staging, Sign: true, Verify: trusting(ciPub),
			Promote: []promoteConfig{{To: dest, RequireSignature: true, MutableTags: []string{"latest"}}},
		})))
	testenv.StartRegistry(t, localregistry.WithPort(port), localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))

	created := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	// The arch tags exist, pushed and signed as a CI job would: promoter builds nothing.
	pushRevision := func(rev string) {
		t.Helper()
		signedPush(t, staging+":"+rev+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
		signedPush(t, staging+":"+rev+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	}
	const (
		rev1 = "4c1d8a7e02b95f3a6d0e1c2b3a4f5e6d7c8b9a01"
		rev2 = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"
		rev3 = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
	)
	pushRevision(rev1)
	r1 := d.waitPhase(t, "app", rev1, 30*time.Second, types.PhasePromoted)

	githubTagPush(t, d.URL, "tag-delivery-1", "v1.2.3", rev1)
	r1 = d.waitRelease(t, "app", rev1, "v1.2.3", dest, 30*time.Second)
	wantReleased(t, r1, "v1.2.3", dest)
	cosignVerify(t, testenv.Tool(t, "cosign"), pubPath, dest+":v1.2.3")

	t.Run("the same tag for another commit is refused and the destination is untouched", func(t *testing.T) {
		pushRevision(rev2)
		r2 := d.waitPhase(t, "app", rev2, 30*time.Second, types.PhasePromoted)
		githubTagPush(t, d.URL, "tag-delivery-2", "v1.2.3", rev2)
		r2 = d.waitRelease(t, "app", rev2, "v1.2.3", dest, 30*time.Second)
		pr := r2.Releases["v1.2.3"].Promotions[dest]
		if pr.Done || !pr.Conflicted || !strings.Contains(pr.Error, r1.Index) || !strings.Contains(pr.Error, r2.Index) {
			t.Fatalf("release of %s: %+v, want conflicted naming %s and %s", rev2, pr, r1.Index, r2.Index)
		}
		if r2.Phase != types.PhasePromoted {
			t.Errorf("revision %s is %s after its release conflicted, want promoted", rev2, r2.Phase)
		}
		if got := headDigest(t, dest+":v1.2.3"); got != r1.Index {
			t.Errorf("%s:v1.2.3 moved to %s", dest, got)
		}
		// latest is mutable and follows revisions, not releases.
		if got := headDigest(t, dest+":latest"); got != r2.Index {
			t.Errorf("%s:latest is %s, want the last revision %s", dest, got, r2.Index)
		}
		if v := testutil.ToFloat64(d.Metrics.ImmutabilityViolations); v != 1 {
			t.Errorf("promoter_immutability_violations_total = %v, want 1", v)
		}
		if !d.Logs.Contains("release refused: destination tag is immutable", rev2) {
			t.Errorf("no log line for the refused release")
		}
	})

	t.Run("a tag pushed before its commit's images waits for them", func(t *testing.T) {
		githubTagPush(t, d.URL, "tag-delivery-3", "v2.0.0", rev3)
		var r *types.Revision
		err := testenv.WaitFor(10*time.Second, func() error {
			if r = d.revision(t, "app", rev3); r == nil || r.Phase != "" || r.Releases["v2.0.0"].Requested.IsZero() {
				return errors.New("not recorded")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("release v2.0.0 not recorded on %s: %+v", rev3, r)
		}
		pushRevision(rev3)
		r3 := d.waitRelease(t, "app", rev3, "v2.0.0", dest, 30*time.Second)
		if pr := r3.Releases["v2.0.0"].Promotions[dest]; !pr.Done || pr.Digest != r3.Index || r3.Phase != types.PhasePromoted {
			t.Fatalf("revision %s: %s, release %+v; want promoted with the release done", rev3, r3.Phase, pr)
		}
		if got := headDigest(t, dest+":v2.0.0"); got != r3.Index {
			t.Errorf("%s:v2.0.0 is %s, want %s", dest, got, r3.Index)
		}
	})
}

// waitRelease polls the status API until release tag of rev has an outcome at dest (done
// wantReleased fails t unless release tag of r is done at dest, where it names r's index.
func wantReleased(t *testing.T, r *types.Revision, tag, dest string) {
	t.Helper()
	if pr := r.Releases[tag].Promotions[dest]; !pr.Done || pr.Digest != r.Index {
		t.Fatalf("release %s at %s: %+v, want done with the index %s", tag, dest, pr, r.Index)
	}
	if got := headDigest(t, dest+":"+tag); got != r.Index {
		t.Fatalf("%s:%s is %s, want the revision's index %s", dest, tag, got, r.Index)
	}
}

// or conflicted).
func (d *runningDaemon) waitRelease(t *testing.T, pipeline, rev, tag, dest string, timeout time.Duration) *types.Revision {
	t.Helper()
	var last *types.Revision
	err := testenv.WaitFor(timeout, func() error {
		r, err := d.tryRevision(pipeline, rev)
		if err != nil || r == nil {
			return fmt.Errorf("no state (%v)", err)
		}
		if last = r; !r.Releases[tag].Promotions[dest].Done && !r.Releases[tag].Promotions[dest].Conflicted {
			return errors.New("no outcome yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("release %s of %s/%s has no outcome at %s in %s; last state %+v\nlogs:\n%s", tag, pipeline, rev, dest, timeout, last, d.Logs.String())
	}
	return last
}

// githubTagPush posts GitHub's push event of an annotated tag (the payload of
// internal/events/testdata/source, for this repository): after is the tag object, and
// head_commit the commit rev it points at.
func githubTagPush(t *testing.T, daemonURL, delivery, tag, rev string) {
	t.Helper()
	b, err := os.ReadFile("../internal/events/testdata/source/github-tag-push-annotated.json")
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(tag + rev))
	p["ref"], p["after"], p["compare"] = "refs/tags/"+tag, hex.EncodeToString(sum[:20]), "https://git.example/team/app/compare/"+tag
	p["head_commit"].(map[string]any)["id"] = rev
	p["repository"] = map[string]any{"full_name": "team/app", "html_url": "https://git.example/team/app", "clone_url": "https://git.example/team/app.git"}
	if accepted := postGitHub(t, daemonURL, delivery, p).Accepted; accepted != 1 {
		t.Fatalf("github tag webhook: %d events accepted, want 1", accepted)
	}
}
