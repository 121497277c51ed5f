package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestAnArchTagPushedOverAfterTheBuildIsNeverSigned is issue 22's first bypass, against a
// real kube-apiserver, real NATS, real registries and real rootless BuildKit: after the
// BuildKit Job pushed linux/amd64 and before its result reached the daemon, the real crane
// CLI pushes another image under the same arch tag, as anyone with push rights to staging
// could. The revision is conflicted with a reason naming both digests and the Job; nothing
// is merged, signed or promoted.
func TestAnArchTagPushedOverAfterTheBuildIsNeverSigned(t *testing.T) {
	kube := testenv.StartKube(t)
	builderClient := builderNamespace(t, kube)
	bk := testenv.NewBuildKit(t)
	gitsrv := testenv.StartGitServer(t)
	nats := testenv.StartNATS(t)
	crane := testenv.Tool(t, "crane")
	stagingPort := testenv.FreePort(t)
	stagingHost := fmt.Sprintf("127.0.0.1:%d", stagingPort)
	staging := stagingHost + "/acme/app"
	dest := testenv.StartRegistry(t).Host + "/acme/app"
	dir := t.TempDir()
	keyPath, _ := writeKeyPair(t, dir, "pw")

	repo, rev := gitsrv.CreateRepo(t, "app", map[string]string{
		"Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n",
		"hello.txt":  "hello from git\n",
	})
	d := startDaemon(t, newDaemonConfig(t, withNATS(nats.URL), withGitHubSecret(githubSecret), withSigningKey(keyPath, "pw"), withReconcile("1h"), withBuilder(buildNS, 1),
		withPipeline(pipelineConfig{
			Name: "app", Source: &sourceConfig{Repo: repo, Branch: "main"}, Platforms: bothArches, Staging: staging,
			Sign: true, Promote: signedTo(dest),
		})))
	testenv.StartRegistryAt(t, filepath.Join(dir, "staging"), localregistry.WithPort(stagingPort),
		localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))
	registrySecret(t, kube.Client, stagingHost)
	startAgent(t, builderClient, nats.URL, 1, "linux/amd64", "linux/arm64")
	node := testenv.StartNode(t, kube.Client, buildNS, bk)

	// The intruder's image, waiting in another repository of the same registry.
	intruder := stagingHost + "/other/tool:1"
	testenv.Push(t, intruder, testenv.PlatformImage(t, "linux/amd64", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)))
	archTag := staging + ":" + rev + "-amd64"
	var (
		once     sync.Once
		builtRun testenv.NodeRun
		craneOut []byte
		craneErr error
	)
	node.BeforeFinish(func(run testenv.NodeRun) {
		if run.ExitCode != 0 || !strings.Contains(run.Job, "linux-amd64") {
			return
		}
		once.Do(func() {
			builtRun = run
			craneOut, craneErr = exec.Command(crane, "copy", intruder, archTag).CombinedOutput()
		})
	})

	githubPush(t, d.URL, repo, "evidence-delivery", rev)
	r := d.waitPhase(t, "app", rev, 4*time.Minute, types.PhaseConflicted, types.PhasePromoted, types.PhaseFailed)
	if craneErr != nil {
		t.Fatalf("crane copy over %s: %v\n%s", archTag, craneErr, craneOut)
	}
	if r.Phase != types.PhaseConflicted {
		t.Fatalf("revision %s, want conflicted: %+v", r.Phase, r)
	}
	t.Logf("promoter status reason: %s", r.Reason)
	amd := r.Platforms["linux/amd64"]
	built, ok := registryDigestOf(t, builtRun.Message)
	if !ok {
		t.Fatalf("the BuildKit Job reported no digest in its termination message: %q", builtRun.Message)
	}
	pushedOver := testenv.Resolve(t, archTag)
	if amd.BuildDigest != built || pushedOver == built {
		t.Fatalf("build digest %s, the Job reported %s, the tag holds %s", amd.BuildDigest, built, pushedOver)
	}
	wantReason(t, r, pushedOver, built, "job "+amd.Job, "pushed over after the build", staging+":"+rev+"-amd64")
	if r.Index != "" || r.Signed {
		t.Errorf("merged %q, signed %v: want neither", r.Index, r.Signed)
	}
	// Nothing reached staging's revision tag, the destination, or a signature.
	for _, ref := range []string{staging + ":" + rev, dest + ":" + rev, staging + ":" + strings.Replace(pushedOver, ":", "-", 1) + ".sig",
		staging + ":" + strings.Replace(pushedOver, ":", "-", 1)} {
		if testenv.Resolve(t, ref) != "" {
			t.Errorf("%s exists; nothing of a conflicted revision may be written", ref)
		}
	}
}

// registryDigestOf reads the digest a build left in its termination message, as the agent
// does (buildctl's metadata file).
func registryDigestOf(t *testing.T, message string) (string, bool) {
	t.Helper()
	i := strings.Index(message, `"containerimage.digest"`)
	if i < 0 {
		return "", false
	}
	rest := message[i:]
	j := strings.Index(rest, "sha256:")
	if j < 0 || len(rest) < j+71 {
		return "", false
	}
	return rest[j : j+71], true
}

// TestAMergeOnlyPipelineMergesOnlyWhatItsCISigned is issue 22's second bypass against real
// registries, real NATS and the real cosign CLI: a merge-only pipeline that signs trusts
// the arch images its CI key signed (`cosign sign --key`, in either format) and nothing
// else. An unsigned image and one signed by another key fail the revision with a reason
// naming the image and the expected signer, and nothing reaches the destination; a
// signature added later, or a signed re-push, then recovers the revision.
func TestAMergeOnlyPipelineMergesOnlyWhatItsCISigned(t *testing.T) {
	cosign := testenv.Tool(t, "cosign")
	env := newStaged(t, "acme/app")
	staging, dest := env.Staging, env.Dest
	ciKey, ciPub := writeKeyPair(t, t.TempDir(), "ci-pw")
	rogueKey, _ := writeKeyPair(t, t.TempDir(), "rogue-pw")

	d := env.startTrusting(t, "app", ciPub)

	created := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	// ci pushes img by digest, signs it with key (password pw) if key is set, then tags it
	// as rev's arch tag: the order a CI job that signs keeps, so the tag never names an
	// unsigned image.
	ci := func(rev, platform string, img v1.Image, key, pw string, cosignFlags ...string) string {
		t.Helper()
		var sign func(string)
		if key != "" {
			sign = func(ref string) { cosignSign(t, cosign, key, pw, ref, cosignFlags...) }
		}
		return pushSigned(t, archRef(staging, rev, platform), img, sign)
	}
	notPromoted := func(rev string) {
		t.Helper()
		if testenv.Resolve(t, dest+":"+rev) != "" {
			t.Errorf("%s:%s exists: an untrusted revision reached the destination", dest, rev)
		}
	}

	t.Run("images the CI key signed are merged, signed and promoted", func(t *testing.T) {
		const rev = "1111111111111111111111111111111111111111"
		amd := ci(rev, "linux/amd64", testenv.PlatformImage(t, "linux/amd64", created), ciKey, "ci-pw")
		arm := ci(rev, "linux/arm64", testenv.PlatformImage(t, "linux/arm64", created), ciKey, "ci-pw", "--new-bundle-format=false")
		r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
		if r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[dest].Digest != r.Index {
			t.Fatalf("revision: %+v", r)
		}
		wantSignedBy(t, r, ciPub, map[string]string{"linux/amd64": amd, "linux/arm64": arm})
		kids := testenv.IndexChildren(t, dest+":"+rev)
		for _, dg := range []string{r.Index, kids["linux/amd64"], kids["linux/arm64"]} {
			cosignVerify(t, cosign, env.Pub, dest+"@"+dg)
		}
	})

	t.Run("an unsigned image fails the revision until CI signs it", func(t *testing.T) {
		const rev = "2222222222222222222222222222222222222222"
		ci(rev, "linux/amd64", testenv.PlatformImage(t, "linux/amd64", created.Add(time.Hour)), ciKey, "ci-pw")
		unsigned := ci(rev, "linux/arm64", testenv.PlatformImage(t, "linux/arm64", created.Add(time.Hour)), "", "")
		r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhaseFailed, types.PhasePromoted, types.PhaseConflicted)
		if r.Phase != types.PhaseFailed || r.Index != "" {
			t.Fatalf("revision %+v, want failed and nothing merged", r)
		}
		t.Logf("promoter status reason: %s", r.Reason)
		wantReason(t, r, staging+"@"+unsigned, ciPub, "no signature")
		notPromoted(rev)
		// CI signs it late (after the tag was pushed): the reconciler finds the signature.
		cosignSign(t, cosign, ciKey, "ci-pw", staging+"@"+unsigned)
		r = d.waitPhase(t, "app", rev, 2*time.Minute, types.PhasePromoted, types.PhaseConflicted)
		if r.Phase != types.PhasePromoted || r.Platforms["linux/arm64"].Evidence == nil || r.Platforms["linux/arm64"].Evidence.Kind != types.EvidenceSignature {
			t.Fatalf("after CI signed: %+v", r)
		}
	})

	t.Run("an image signed by another key fails the revision until a signed re-push", func(t *testing.T) {
		const rev = "3333333333333333333333333333333333333333"
		ci(rev, "linux/amd64", testenv.PlatformImage(t, "linux/amd64", created.Add(2*time.Hour)), ciKey, "ci-pw")
		rogue := ci(rev, "linux/arm64", testenv.PlatformImage(t, "linux/arm64", created.Add(2*time.Hour)), rogueKey, "rogue-pw")
		r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhaseFailed, types.PhasePromoted, types.PhaseConflicted)
		if r.Phase != types.PhaseFailed || r.Index != "" {
			t.Fatalf("revision %+v, want failed and nothing merged", r)
		}
		t.Logf("promoter status reason: %s", r.Reason)
		wantReason(t, r, staging+"@"+rogue, ciPub)
		notPromoted(rev)
		good := ci(rev, "linux/arm64", testenv.PlatformImage(t, "linux/arm64", created.Add(3*time.Hour)), ciKey, "ci-pw")
		r = d.waitPhase(t, "app", rev, 2*time.Minute, types.PhasePromoted, types.PhaseConflicted)
		if r.Phase != types.PhasePromoted || r.Platforms["linux/arm64"].Digest != good {
			t.Fatalf("after the signed re-push: %+v", r)
		}
		if kids := testenv.IndexChildren(t, dest+":"+rev); kids["linux/arm64"] != good {
			t.Errorf("promoted linux/arm64 %s, want the signed re-push %s", kids["linux/arm64"], good)
		}
	})
}

// cosignSign signs ref with the cosign CLI and key (encrypted with pw), offline: no
// transparency log, no signing config, nothing but the registry.
func cosignSign(t *testing.T, cosign, key, pw, ref string, flags ...string) {
	t.Helper()
	home := t.TempDir()
	args := append([]string{"sign", "-y", "--key", key, "--tlog-upload=false", "--use-signing-config=false"}, flags...)
	cmd := exec.CommandContext(context.Background(), cosign, append(args, ref)...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+pw, "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign sign %s: %v\n%s", ref, err, out)
	}
}

// wantSignedBy fails t unless r merged each platform's digest in digests on the evidence
// of a signature by the key pub.
func wantSignedBy(t *testing.T, r *types.Revision, pub string, digests map[string]string) {
	t.Helper()
	for p, dg := range digests {
		e := r.Platforms[p].Evidence
		if e == nil || e.Kind != types.EvidenceSignature || e.Digest != dg || !strings.Contains(e.Signer, pub) {
			t.Errorf("%s evidence %+v, want a signature by %s of %s", p, e, pub, dg)
		} else {
			t.Logf("%s: %s", p, e)
		}
	}
}
