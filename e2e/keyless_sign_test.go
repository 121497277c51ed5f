package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestKeylessSigning is issue 23's keyless signer end to end: the daemon holds no signing
// key. It signs with a Fulcio certificate bought with the token of its own "promoter"
// service account (audience sigstore, from a real kube-apiserver that is Fulcio's OIDC
// issuer), stamps each signature at a real RFC 3161 timestamp authority and enters it in
// a real Rekor v2 log (sign.rekorURL). A merge-only
// revision is merged, signed keyless and promoted to a destination that requires a
// signature, which the daemon checks keyless against sign.trustedRoot. The cosign CLI
// verifies the promoted index and each child with promoter's identity and refuses
// another; the signature verifies with the TSA's time, not the clock's (the certificate
// expires 10 minutes after signing); a second run of the sign step adds nothing.
func TestKeylessSigning(t *testing.T) {
	kube := testenv.StartKube(t, testenv.WithPublicIssuer())
	ss := testenv.StartSigstore(t, kube)
	env := newStaged(t, "acme/app")
	k := &keylessRun{cosign: testenv.Tool(t, "cosign"), ss: ss, staging: env.Staging, dest: env.Dest}

	const ns = "promoter-system"
	k.identity = ss.Identity(ns, "promoter")
	k.other = ss.Identity(ns, "intruder")
	k.token = ss.IdentityToken(t, ns, "promoter")
	t.Logf("issuer %s, Fulcio %s, TSA %s, trusted root %s, token %s", ss.Issuer, ss.FulcioURL, ss.TSAURL, ss.TrustedRoot, k.token)

	d := env.start(t, newDaemonConfig(t, withNATS(env.NATS.URL), withReconcile("2s"),
		withKeylessSigning(signConfig{FulcioURL: ss.FulcioURL, IdentityToken: k.token, TSAURL: ss.TSAURL, RekorURL: ss.RekorURL, TrustedRoot: ss.TrustedRoot}),
		withPipeline(pipelineConfig{
			Name: "app", Platforms: bothArches, Staging: k.staging,
			Sign: true, Verify: acceptUnverified(), Promote: signedTo(k.dest),
		})))

	const rev = "2323232323232323232323232323232323232323"
	created := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	testenv.Push(t, k.staging+":"+rev+"-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	testenv.Push(t, k.staging+":"+rev+"-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	r := d.waitPhase(t, "app", rev, 2*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
	if r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[k.dest].Digest != r.Index {
		t.Fatalf("revision %s (%s), want promoted: %+v", r.Phase, r.Reason, r)
	}
	if !d.Logs.Contains(`"msg":"signing keyless"`, k.identity) {
		t.Errorf("the daemon did not log that it signs keyless as %s", k.identity)
	}
	kids := testenv.IndexChildren(t, k.dest+":"+rev)
	k.index = r.Index
	k.digests = []string{r.Index, kids["linux/amd64"], kids["linux/arm64"]}

	t.Run("cosign verifies the promoted index and children with promoter's identity", k.checkCosignVerifies)
	t.Run("the signature verifies at the TSA's time, after the certificate expired", k.checkTSATime)
	t.Run("a second run of the sign step adds no signature", k.checkSecondSignSkips)
}

// keylessRun is a revision TestKeylessSigning's daemon promoted, signed keyless as
// identity, and what its subtests check it with.
type keylessRun struct {
	cosign string
	ss     *testenv.Sigstore
	// identity is promoter's service account's; other is another one of the same issuer.
	identity, other string
	// token is the identity's token the daemon signs with.
	token string
	// staging and dest are the pipeline's repositories.
	staging, dest string
	// index is the promoted index's digest; digests are it and its two children's.
	index   string
	digests []string
}

func (k *keylessRun) checkCosignVerifies(t *testing.T) {
	for _, dg := range k.digests {
		if out, err := cosignVerifyKeyless(t, k.cosign, k.ss, k.dest+"@"+dg, k.identity); err != nil {
			t.Errorf("cosign verify %s@%s as %s: %v\n%s", k.dest, dg, k.identity, err, out)
		}
	}
	// The log entry too: the same check without --insecure-ignore-tlog.
	args := []string{"verify", "--trusted-root", k.ss.TrustedRoot, "--certificate-identity", k.identity,
		"--certificate-oidc-issuer", k.ss.Issuer, "--use-signed-timestamps", "--insecure-ignore-sct", k.dest + "@" + k.index}
	out, err := testenv.Cosign(t, k.cosign, args...).CombinedOutput()
	if err != nil {
		t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("$ cosign %s\n-> passed (log entry checked)", strings.Join(args, " "))
	if out, err := cosignVerifyKeyless(t, k.cosign, k.ss, k.dest+"@"+k.index, k.other); err == nil || !strings.Contains(out, "no matching CertificateIdentity") {
		t.Errorf("cosign verify as %s: %v, want \"no matching CertificateIdentity\"\n%s", k.other, err, out)
	}
}

func (k *keylessRun) checkTSATime(t *testing.T) {
	tr, err := root.NewTrustedRootFromPath(k.ss.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	// Signed timestamps only: no WithCurrentTime, no log. sigstore-go validates the
	// certificate chain at each verified timestamp's time, so the clock plays no part
	// and the 10-minute certificate's expiry does not matter.
	v, err := sgverify.NewVerifier(tr, sgverify.WithSignedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	cid, err := sgverify.NewShortCertificateIdentity(k.ss.Issuer, "", k.identity, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, dg := range k.digests {
		k.checkBundleAtTSATime(t, v, cid, dg)
	}
}

// checkBundleAtTSATime checks dg at dest has one signature bundle, entered once in Rekor,
// that v verifies, as certificate identity cid, at one TSA time within its certificate's
// validity.
func (k *keylessRun) checkBundleAtTSATime(t *testing.T, v *sgverify.Verifier, cid sgverify.CertificateIdentity, dg string) {
	t.Helper()
	bundles := testenv.SigstoreBundles(t, k.dest+"@"+dg)
	if len(bundles) != 1 {
		t.Fatalf("%s@%s has %d signature bundles, want 1", k.dest, dg, len(bundles))
	}
	b := bundles[0]
	if entries, err := b.TlogEntries(); err != nil || len(entries) != 1 {
		t.Errorf("%s: %d Rekor entries (%v), want 1", dg, len(entries), err)
	}
	res, err := v.Verify(b, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithCertificateIdentity(cid)))
	if err != nil {
		t.Fatalf("verifying the bundle of %s with its signed timestamp: %v", dg, err)
	}
	vc, _ := b.VerificationContent()
	leaf := vc.Certificate()
	ts := res.VerifiedTimestamps
	if len(ts) != 1 || ts[0].Type != "TimestampAuthority" || ts[0].Timestamp.Before(leaf.NotBefore) || ts[0].Timestamp.After(leaf.NotAfter) {
		t.Fatalf("%s: verified timestamps %+v, want one TSA time within the certificate's %s..%s", dg, ts, leaf.NotBefore, leaf.NotAfter)
	}
	t.Logf("%s: certificate valid %s..%s; verified at the TSA's %s (%s), not the clock's",
		dg[:19], leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339),
		ts[0].Timestamp.UTC().Format(time.RFC3339), ts[0].Type)
}

func (k *keylessRun) checkSecondSignSkips(t *testing.T) {
	s, err := sign.NewKeylessSigner(sign.Keyless{FulcioURL: k.ss.FulcioURL, IdentityToken: k.token, TSAURL: k.ss.TSAURL, TrustedRoot: k.ss.TrustedRoot}, registry.Client{})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.Sign(context.Background(), k.staging+"@"+k.index)
	if err != nil {
		t.Fatal(err)
	}
	for _, sd := range signed {
		if !sd.Skipped {
			t.Errorf("%s (%s) signed again, want skipped: promoter's own signature is there", sd.Digest, sd.Platform)
		}
	}
	for _, dg := range k.digests {
		if got := len(testenv.SigstoreBundles(t, k.staging+"@"+dg)); got != 1 {
			t.Errorf("staging %s has %d signature bundles after a second run, want 1", dg, got)
		}
	}
	t.Logf("second run: %+v", signed)
}
