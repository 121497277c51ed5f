package e2e

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestKeylessCISignersArePolicy is the keyless trust policy end to end, against a real
// private Fulcio and timestamp authority whose OIDC issuer is a real kube-apiserver, real
// registries, real NATS and the real cosign CLI. CI is a service account: `cosign sign`
// with its TokenRequest token gets a Fulcio certificate for
// https://kubernetes.io/namespaces/NS/serviceaccounts/ci and an RFC 3161 timestamp, and
// writes a sigstore bundle referrer. A merge-only pipeline whose verify policy names that
// identity and issuer, with the trusted root `cosign trusted-root create` wrote, merges,
// signs (with promoter's own key) and promotes those images, and cosign verifies the
// promoted children keyless. Images signed with another service account's token fail the
// revision with a reason naming the identity found and the one expected, and nothing
// reaches the destination.
func TestKeylessCISignersArePolicy(t *testing.T) {
	kube := testenv.StartKube(t, testenv.WithPublicIssuer())
	ss := testenv.StartSigstore(t, kube)
	cosign := testenv.Tool(t, "cosign")
	env := newStaged(t, "acme/app")
	staging, dest := env.Staging, env.Dest

	const ns = "ci-system"
	ciIdentity, intruderIdentity := ss.Identity(ns, "ci"), ss.Identity(ns, "intruder")
	ciToken, intruderToken := ss.IdentityToken(t, ns, "ci"), ss.IdentityToken(t, ns, "intruder")
	t.Logf("issuer %s, Fulcio %s, TSA %s, trusted root %s", ss.Issuer, ss.FulcioURL, ss.TSAURL, ss.TrustedRoot)

	d := env.startSigning(t, pipelineConfig{
		Name: "app", Platforms: bothArches, Staging: staging, Sign: true,
		Verify: &verifyConfig{
			Signers:     []signerConfig{{Issuer: ss.Issuer, Subject: ciIdentity}},
			TrustedRoot: ss.TrustedRoot,
		},
		Promote: signedTo(dest),
	})

	created := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	// ci pushes img by digest, signs it keyless with the identity token in tokenFile, then
	// tags it as rev's arch tag, so the tag never names an unsigned image.
	ci := func(t *testing.T, rev, platform string, img v1.Image, tokenFile string) string {
		t.Helper()
		return pushSigned(t, archRef(staging, rev, platform), img, func(ref string) {
			args := []string{"sign", "-y", "--signing-config", ss.SigningConfig, "--trusted-root", ss.TrustedRoot, "--identity-token", tokenFile, ref}
			if out, err := testenv.Cosign(t, cosign, args...).CombinedOutput(); err != nil {
				t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
	verify := func(t *testing.T, ref, identity string) (string, error) {
		t.Helper()
		return cosignVerifyKeyless(t, cosign, ss, ref, identity)
	}

	t.Run("images the ci service account signed are merged, signed and promoted", func(t *testing.T) {
		const rev = "1111111111111111111111111111111111111111"
		amd := ci(t, rev, "linux/amd64", testenv.PlatformImage(t, "linux/amd64", created), ciToken)
		arm := ci(t, rev, "linux/arm64", testenv.PlatformImage(t, "linux/arm64", created), ciToken)
		r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
		if r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[dest].Digest != r.Index {
			t.Fatalf("revision %s (%s), want promoted: %+v", r.Phase, r.Reason, r)
		}
		wantSignatureEvidence(t, r, "signed by "+ciIdentity+" from "+ss.Issuer, map[string]string{"linux/amd64": amd, "linux/arm64": arm})
		kids := testenv.IndexChildren(t, dest+":"+rev)
		if kids["linux/amd64"] != amd || kids["linux/arm64"] != arm {
			t.Fatalf("promoted children %v, want the CI-signed %s and %s", kids, amd, arm)
		}
		// promoter's own signature, with its key.
		for _, dg := range []string{r.Index, amd, arm} {
			cosignVerify(t, cosign, env.Pub, dest+"@"+dg)
		}
		// CI's keyless signature of a promoted child, as cosign checks it.
		if out, err := verify(t, staging+"@"+amd, ciIdentity); err != nil {
			t.Errorf("cosign verify as %s: %v\n%s", ciIdentity, err, out)
		}
		if out, err := verify(t, staging+"@"+amd, intruderIdentity); err == nil || !strings.Contains(out, "no matching CertificateIdentity") {
			t.Errorf("cosign verify as %s: %v, want \"no matching CertificateIdentity\"\n%s", intruderIdentity, err, out)
		}
		// The promotion carried CI's signature (a bundle referrer) to the destination.
		if out, err := verify(t, dest+"@"+arm, ciIdentity); err != nil {
			t.Errorf("cosign verify of the promoted %s as %s: %v\n%s", dest+"@"+arm, ciIdentity, err, out)
		}
	})

	t.Run("images another service account signed fail the revision and reach nowhere", func(t *testing.T) {
		const rev = "2222222222222222222222222222222222222222"
		amd := ci(t, rev, "linux/amd64", testenv.PlatformImage(t, "linux/amd64", created.Add(time.Hour)), intruderToken)
		ci(t, rev, "linux/arm64", testenv.PlatformImage(t, "linux/arm64", created.Add(time.Hour)), intruderToken)
		r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhaseFailed, types.PhasePromoted, types.PhaseConflicted)
		if r.Phase != types.PhaseFailed || r.Index != "" || r.Signed {
			t.Fatalf("revision %s, want failed and nothing merged or signed: %+v", r.Phase, r)
		}
		t.Logf("promoter status reason: %s", r.Reason)
		wantReason(t, r,
			staging+"@",
			"certificate identity "+intruderIdentity+" from "+ss.Issuer, // found
			"identity "+ciIdentity+" from "+ss.Issuer,                   // expected
		)
		for _, ref := range []string{dest + ":" + rev, staging + ":" + rev} {
			if testenv.Resolve(t, ref) != "" {
				t.Errorf("%s exists: an untrusted revision was merged or promoted", ref)
			}
		}
		// cosign agrees: the intruder's signature is not CI's.
		if out, err := verify(t, staging+"@"+amd, ciIdentity); err == nil || !strings.Contains(out, "no matching CertificateIdentity") {
			t.Errorf("cosign verify of the intruder's image as %s: %v, want \"no matching CertificateIdentity\"\n%s", ciIdentity, err, out)
		}
	})
}

// wantSignatureEvidence fails t unless r merged each platform's digest in digests on the
// evidence of a signature that reads want.
func wantSignatureEvidence(t *testing.T, r *types.Revision, want string, digests map[string]string) {
	t.Helper()
	for p, dg := range digests {
		e := r.Platforms[p].Evidence
		if e == nil || e.Kind != types.EvidenceSignature || e.Digest != dg || e.String() != want {
			t.Errorf("%s evidence %+v, want %q of %s", p, e, want, dg)
		} else {
			t.Logf("%s evidence: %s", p, e)
		}
	}
}

// cosignVerifyKeyless runs `cosign verify` keyless against ref as identity, trusting ss's
// trusted root and issuer and its signed timestamps, and returns its output and error; the
// command and its outcome are logged to be quoted.
func cosignVerifyKeyless(t *testing.T, cosign string, ss *testenv.Sigstore, ref, identity string) (string, error) {
	t.Helper()
	args := []string{"verify", "--trusted-root", ss.TrustedRoot, "--certificate-identity", identity,
		"--certificate-oidc-issuer", ss.Issuer, "--use-signed-timestamps", "--insecure-ignore-sct", "--insecure-ignore-tlog", ref}
	out, err := testenv.Cosign(t, cosign, args...).CombinedOutput()
	outcome := "passed"
	if err != nil {
		outcome = "failed: " + err.Error()
	}
	t.Logf("$ cosign %s\n-> %s\n%s", strings.Join(args, " "), outcome, lastLines(strings.TrimSpace(string(out)), 4))
	return string(out), err
}
