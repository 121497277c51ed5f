package sign_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestWitnessedSignatures signs against a real private stack (Fulcio, a timestamp
// authority and a Rekor v2 log, all on loopback): a keyless signature with a log entry,
// and a key signature with a timestamp and a log entry. Each bundle carries what its
// witnesses returned, verifies with sigstore-go against the trusted root with the log
// and the timestamp both required, and passes the cosign CLI with the log checked (no
// --insecure-ignore-tlog).
func TestWitnessedSignatures(t *testing.T) {
	kube := testenv.StartKube(t, testenv.WithPublicIssuer())
	ss := testenv.StartSigstore(t, kube)
	tr, err := root.NewTrustedRootFromPath(ss.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	// Both witnesses required: one verified log entry and one verified TSA timestamp.
	v, err := verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithSignedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	const ns = "promoter-system"
	w := witnessEnv{ss: ss, reg: testenv.StartRegistry(t), ns: ns, identity: ss.Identity(ns, "promoter"), v: v}
	t.Run("keyless with a Rekor v2 entry", w.keylessLogged)
	t.Run("a key with a timestamp and a Rekor v2 entry", w.keyWitnessed)
	t.Run("witnesses need a trusted root that lists them", w.needTrustedRoot)
}

// witnessEnv is the private sigstore stack and registry TestWitnessedSignatures signs
// against, and the verifier that requires both witnesses.
type witnessEnv struct {
	ss       *testenv.Sigstore
	reg      *localregistry.Registry
	ns       string // the signer's service account's namespace
	identity string // the certificate identity of service account "promoter" in ns
	v        *verify.Verifier
}

// witnessed checks ref has one bundle with one log entry that verifies with policy and
// both witnesses required, and returns it.
func (w witnessEnv) witnessed(t *testing.T, ref string, policy verify.PolicyBuilder) *sgbundle.Bundle {
	t.Helper()
	bundles := testenv.SigstoreBundles(t, ref)
	if len(bundles) != 1 {
		t.Fatalf("%s has %d bundles, want 1", ref, len(bundles))
	}
	b := bundles[0]
	entries, err := b.TlogEntries()
	if err != nil || len(entries) != 1 {
		t.Fatalf("%s: %d log entries (%v), want 1", ref, len(entries), err)
	}
	res, err := w.v.Verify(b, policy)
	if err != nil {
		t.Fatalf("%s: verifying with the log entry and the timestamp required: %v", ref, err)
	}
	var kinds []string
	for _, ts := range res.VerifiedTimestamps {
		kinds = append(kinds, ts.Type)
	}
	t.Logf("%s: log entry %d of log %s; verified timestamps %v",
		ref[strings.LastIndex(ref, "@")+1:][:19], entries[0].LogIndex(), entries[0].LogKeyID(), kinds)
	return b
}

func (w witnessEnv) keylessLogged(t *testing.T) {
	ctx := context.Background()
	s, err := sign.NewKeylessSigner(sign.Keyless{FulcioURL: w.ss.FulcioURL, IdentityToken: w.ss.IdentityToken(t, w.ns, "promoter"),
		TSAURL: w.ss.TSAURL, RekorURL: w.ss.RekorURL, TrustedRoot: w.ss.TrustedRoot}, registry.Client{})
	if err != nil {
		t.Fatal(err)
	}
	p := pushIndex(t, w.reg.Host+"/acme/keyless-logged")
	if _, err := s.Sign(ctx, p.tag); err != nil {
		t.Fatal(err)
	}
	cid, err := verify.NewShortCertificateIdentity(w.ss.Issuer, "", w.identity, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.index, p.children["linux/arm64"]} {
		w.witnessed(t, p.at(d), verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithCertificateIdentity(cid)))
		args := []string{"verify", "--trusted-root", w.ss.TrustedRoot, "--certificate-identity", w.identity,
			"--certificate-oidc-issuer", w.ss.Issuer, "--use-signed-timestamps", "--insecure-ignore-sct", p.at(d)}
		if out, err := cosignCmd(t, t.TempDir(), args...); err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("cosign %s: passed", strings.Join(args, " "))
	}
	// Signing again finds its own logged signature.
	again, err := s.Sign(ctx, p.tag)
	if err != nil || !again[0].Skipped {
		t.Fatalf("signing again: %+v, %v; want skipped", again, err)
	}

	// requireSignature of a promoter now signing as another service account accepts
	// this one's signatures only when keys.identities lists it.
	renamed := sign.Identity{Issuer: w.ss.Issuer, Subject: w.ss.Identity(w.ns, "promoter-v2")}
	only, err := sign.NewTrustedVerifier(registry.Client{}, sign.Trusted{Own: &renamed, TrustedRoot: w.ss.TrustedRoot})
	if err != nil {
		t.Fatal(err)
	}
	_, err = only.Verify(ctx, p.tag)
	if !errors.Is(err, sign.ErrBadSignature) || !strings.Contains(err.Error(), "certificate identity "+renamed.Subject) {
		t.Fatalf("verifying as %s alone: %v, want ErrBadSignature naming it", renamed.Subject, err)
	}
	also, err := sign.NewTrustedVerifier(registry.Client{}, sign.Trusted{Own: &renamed, TrustedRoot: w.ss.TrustedRoot,
		Identities: []types.TrustedSigner{{Issuer: w.ss.Issuer, SubjectRegexp: "^https://kubernetes.io/namespaces/" + w.ns + "/serviceaccounts/promoter$"}}})
	if err != nil {
		t.Fatal(err)
	}
	if checked, err := also.Verify(ctx, p.tag); err != nil || len(checked) != 3 {
		t.Fatalf("verifying with the old identity listed: %+v, %v; want 3 digests", checked, err)
	}
}

func (w witnessEnv) keyWitnessed(t *testing.T) {
	ctx := context.Background()
	k := newKeys(t, "a")
	s, err := sign.NewSigner(k.signer, registry.Client{}, sign.WithWitnesses(sign.Witnesses{
		TSAURL: w.ss.TSAURL, RekorURL: w.ss.RekorURL, TrustedRoot: w.ss.TrustedRoot}))
	if err != nil {
		t.Fatal(err)
	}
	p := pushIndex(t, w.reg.Host+"/acme/key-witnessed")
	if _, err := s.Sign(ctx, p.tag); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.index, p.children["linux/amd64"]} {
		bundles := testenv.SigstoreBundles(t, p.at(d))
		if len(bundles) != 1 {
			t.Fatalf("%d bundles, want 1", len(bundles))
		}
		entries, _ := bundles[0].TlogEntries()
		ts, _ := bundles[0].Timestamps()
		if len(entries) != 1 || len(ts) != 1 {
			t.Fatalf("%s: %d log entries and %d timestamps, want 1 and 1", d, len(entries), len(ts))
		}
		args := []string{"verify", "--key", "cosign.pub", "--trusted-root", w.ss.TrustedRoot, "--use-signed-timestamps", p.at(d)}
		if out, err := cosignCmd(t, k.dir, args...); err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("cosign %s: passed", strings.Join(args, " "))
	}
	if _, err := verifier(k).Verify(ctx, p.tag); err != nil {
		t.Errorf("promoter's verifier: %v", err)
	}
}

func (w witnessEnv) needTrustedRoot(t *testing.T) {
	k := newKeys(t, "a")
	_, err := sign.NewSigner(k.signer, registry.Client{}, sign.WithWitnesses(sign.Witnesses{TSAURL: w.ss.TSAURL}))
	if !errors.Is(err, sign.ErrNoTrustedRoot) {
		t.Errorf("a TSA without a trusted root: %v, want a refusal", err)
	}
	_, err = sign.NewSigner(k.signer, registry.Client{}, sign.WithFormat(sign.FormatLegacy),
		sign.WithWitnesses(sign.Witnesses{TSAURL: w.ss.TSAURL, TrustedRoot: w.ss.TrustedRoot}))
	if !errors.Is(err, sign.ErrBundleOnly) {
		t.Errorf("a TSA with the legacy format: %v, want a refusal", err)
	}
}
