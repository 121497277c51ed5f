package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestKMSSigning: the daemon signs with an AWS KMS key (keys.cosign: awskms://…, served by
// local-kms on loopback behind TLS, reached through sigstore's awskms provider with the
// AWS environment a workload gets) and checks requireSignature with the same key. The
// promoted index and children verify with `cosign verify --key awskms://…`, and not with
// another KMS key.
func TestKMSSigning(t *testing.T) {
	kms := testenv.StartKMS(t)
	ref, _ := kms.CreateKey(t, "promoter")
	other, _ := kms.CreateKey(t, "someone-else")
	cosign := testenv.Tool(t, "cosign")
	env := newStaged(t, "acme/kms")
	d := env.start(t, newDaemonConfig(t, withNATS(env.NATS.URL), withSigningKey(ref, ""), withReconcile("2s"),
		withPipeline(pipelineConfig{
			Name: "app", Platforms: bothArches, Staging: env.Staging,
			Sign: true, Verify: acceptUnverified(), Promote: signedTo(env.Dest),
		})))

	const rev = "4545454545454545454545454545454545454545"
	r := promoteRevision(t, d, env, rev)
	for _, dg := range revisionDigests(t, env.Dest, rev, r) {
		if out, err := cosignVerifyKey(t, cosign, ref, env.Dest+"@"+dg); err != nil {
			t.Errorf("cosign verify --key %s %s@%s: %v\n%s", ref, env.Dest, dg, err, out)
		}
	}
	if out, err := cosignVerifyKey(t, cosign, other, env.Dest+"@"+r.Index); err == nil {
		t.Errorf("cosign verify --key %s (another KMS key) passed:\n%s", other, out)
	}
}

// TestKeyRotation rotates promoter's signing key the way a platform team does in a
// cluster: the key file (a mounted Secret) is replaced under the running daemon, and
// keys.public lists both public keys for the time of the rotation. A revision signed
// with key 1 and one signed with key 2 are both promoted to a destination that requires
// a signature; each verifies with its own key only.
func TestKeyRotation(t *testing.T) {
	cosign := testenv.Tool(t, "cosign")
	env := newStaged(t, "acme/rotate")
	dir := t.TempDir()
	key2, pub2 := writeKeyPair(t, dir, "pw")
	d := env.start(t, newDaemonConfig(t, withNATS(env.NATS.URL), withSigningKey(env.Key, "pw", env.Pub, pub2), withReconcile("2s"),
		withPipeline(pipelineConfig{
			Name: "app", Platforms: bothArches, Staging: env.Staging,
			Sign: true, Verify: acceptUnverified(), Promote: signedTo(env.Dest),
		})))

	const rev1, rev2 = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	r1 := promoteRevision(t, d, env, rev1)

	// Replaced as the kubelet replaces a mounted Secret's file: written aside, renamed.
	raw, err := os.ReadFile(key2)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(env.Key), ".cosign.key.new")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, env.Key); err != nil {
		t.Fatal(err)
	}
	// The scenario, not a wait for an event: the daemon reads its key file again only
	// once its recheck interval (5 s) has passed, a clock rule with nothing to observe.
	time.Sleep(6 * time.Second)
	r2 := promoteRevision(t, d, env, rev2)

	for _, c := range []struct {
		rev       string
		r         *types.Revision
		pub, not  string
		whichKeys string
	}{{rev1, r1, env.Pub, pub2, "key 1"}, {rev2, r2, pub2, env.Pub, "key 2"}} {
		for _, dg := range revisionDigests(t, env.Dest, c.rev, c.r) {
			if out, err := cosignVerifyKey(t, cosign, c.pub, env.Dest+"@"+dg); err != nil {
				t.Errorf("%s signed with %s: cosign verify --key %s @%s: %v\n%s", c.rev[:4], c.whichKeys, c.pub, dg, err, out)
			}
		}
		if out, err := cosignVerifyKey(t, cosign, c.not, env.Dest+"@"+c.r.Index); err == nil {
			t.Errorf("%s signed with %s also verifies with the other key:\n%s", c.rev[:4], c.whichKeys, out)
		}
	}
}

// promoteRevision pushes rev's two platform images to staging and waits until the daemon
// has promoted it, signed.
func promoteRevision(t *testing.T, d *runningDaemon, env *staged, rev string) *types.Revision {
	t.Helper()
	created := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	testenv.Push(t, env.Staging+":"+rev+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	testenv.Push(t, env.Staging+":"+rev+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
	if r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[env.Dest].Digest != r.Index {
		t.Fatalf("revision %s %s (%s), want promoted and signed: %+v", rev, r.Phase, r.Reason, r)
	}
	return r
}

// revisionDigests are the promoted index of rev at dest and its two children.
func revisionDigests(t *testing.T, dest, rev string, r *types.Revision) []string {
	t.Helper()
	kids := testenv.IndexChildren(t, dest+":"+rev)
	return []string{r.Index, kids["linux/amd64"], kids["linux/arm64"]}
}

// cosignVerifyKey runs `cosign verify --key KEY --insecure-ignore-tlog REF` offline; KEY
// is a public key file or a KMS reference.
func cosignVerifyKey(t *testing.T, cosign, key, ref string) (string, error) {
	t.Helper()
	args := []string{"verify", "--key", key, "--insecure-ignore-tlog", ref}
	out, err := testenv.Cosign(t, cosign, args...).CombinedOutput()
	outcome := "passed"
	if err != nil {
		outcome = "failed: " + err.Error()
	}
	t.Logf("$ cosign %s\n-> %s", strings.Join(args, " "), outcome)
	return string(out), err
}
