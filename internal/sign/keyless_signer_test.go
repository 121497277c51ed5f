package sign_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/proto"

	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// jwt is an unsigned token with claims: TokenIdentity reads claims only (Fulcio checks
// the signature).
func jwt(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(b) + "." + enc([]byte("sig"))
}

func TestTokenIdentity(t *testing.T) {
	const iss = "https://kube.example"
	k8s := map[string]any{"namespace": "promoter", "serviceaccount": map[string]any{"name": "promoter", "uid": "u"}}
	cases := []struct {
		name    string
		token   string
		want    sign.Identity
		wantErr error
		wantMsg string // what the refusal says is wrong
	}{
		{"kubernetes service account", jwt(t, map[string]any{"iss": iss, "sub": "system:serviceaccount:promoter:promoter", "kubernetes.io": k8s}),
			sign.Identity{Issuer: iss, Subject: "https://kubernetes.io/namespaces/promoter/serviceaccounts/promoter"}, nil, ""},
		{"verified email", jwt(t, map[string]any{"iss": iss, "email": "ops@example.com", "email_verified": true}),
			sign.Identity{Issuer: iss, Subject: "ops@example.com"}, nil, ""},
		{"unverified email", jwt(t, map[string]any{"iss": iss, "email": "ops@example.com"}), sign.Identity{}, sign.ErrUnsupportedToken, "not verified"},
		{"no issuer", jwt(t, map[string]any{"kubernetes.io": k8s}), sign.Identity{}, sign.ErrUnsupportedToken, "no iss claim"},
		{"kubernetes claim without a service account", jwt(t, map[string]any{"iss": iss, "kubernetes.io": map[string]any{"namespace": "x"}}), sign.Identity{}, sign.ErrUnsupportedToken, "no namespace or service account"},
		{"a CI workflow token", jwt(t, map[string]any{"iss": "https://token.actions.githubusercontent.com", "sub": "repo:a/b:ref:refs/heads/main"}), sign.Identity{}, sign.ErrUnsupportedToken, "only Kubernetes service-account tokens"},
		{"not a JWT", "abc", sign.Identity{}, sign.ErrUnsupportedToken, "not a JWT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sign.TokenIdentity(tc.token)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %+v, %v; want %v", got, err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("got %q, want it to say %q", err, tc.wantMsg)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestNewKeylessSignerRefuses: what cannot sign keyless is refused when the signer is
// made (the daemon's start), saying what is wrong.
func TestNewKeylessSignerRefuses(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte(jwt(t, map[string]any{"iss": "https://kube.example",
		"kubernetes.io": map[string]any{"namespace": "ns", "serviceaccount": map[string]any{"name": "promoter"}}})+"\n"), 0o600)
	notRoot := filepath.Join(dir, "trusted_root.json")
	os.WriteFile(notRoot, []byte(`{"mediaType": "nonsense"}`), 0o600)
	ok := sign.Keyless{FulcioURL: "http://127.0.0.1:1", IdentityToken: token, TSAURL: "http://127.0.0.1:2", TrustedRoot: notRoot}
	cases := []struct {
		name string
		edit func(k *sign.Keyless)
		opts []sign.Option
		// wantErr is the rule broken; want is what the message names (the setting, the
		// file), which is what tells the user the fix.
		wantErr error
		want    string
	}{
		{"no Fulcio", func(k *sign.Keyless) { k.FulcioURL = "" }, nil, sign.ErrKeylessConfig, "needs a Fulcio URL"},
		{"no token", func(k *sign.Keyless) { k.IdentityToken = "" }, nil, sign.ErrKeylessConfig, "needs an identity token file"},
		{"no TSA", func(k *sign.Keyless) { k.TSAURL = "" }, nil, sign.ErrKeylessConfig, "needs a timestamp authority URL"},
		{"TSA not http", func(k *sign.Keyless) { k.TSAURL = "tsa.example" }, nil, sign.ErrBadURL, "timestamp authority URL"},
		{"missing token file", func(k *sign.Keyless) { k.IdentityToken = filepath.Join(dir, "nope") }, nil, fs.ErrNotExist, "reading identity token"},
		{"missing trusted root", func(k *sign.Keyless) { k.TrustedRoot = filepath.Join(dir, "nope.json") }, nil, fs.ErrNotExist, "loading trusted root"},
		{"unreadable trusted root", func(k *sign.Keyless) {}, nil, sign.ErrTrustedRoot, "loading trusted root"},
		{"legacy format", func(k *sign.Keyless) {}, []sign.Option{sign.WithFormat(sign.FormatLegacy)}, sign.ErrBundleOnly, "sigstore bundles only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := ok
			tc.edit(&k)
			_, err := sign.NewKeylessSigner(k, registry.Client{}, tc.opts...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestTimestampURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:3000":                    "http://127.0.0.1:3000/api/v1/timestamp",
		"https://tsa.example/":                     "https://tsa.example/api/v1/timestamp",
		"https://tsa.example/api/v1/timestamp":     "https://tsa.example/api/v1/timestamp",
		"http://timestamp.example.com/rfc3161/tsr": "http://timestamp.example.com/rfc3161/tsr",
	} {
		if got, err := sign.TimestampURL(in); err != nil || got != want {
			t.Errorf("TimestampURL(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestKeylessSign signs keyless against a real private Fulcio (whose OIDC issuer is a
// real kube-apiserver) and a real timestamp authority: each digest gets a bundle with a
// certificate of the service account's identity and an RFC 3161 timestamp; signing
// again adds nothing; the keyless Verifier accepts exactly that identity; the token is
// read again for each signature.
func TestKeylessSign(t *testing.T) {
	kube := testenv.StartKube(t, testenv.WithPublicIssuer())
	ss := testenv.StartSigstore(t, kube)
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	const ns = "promoter-system"
	tokenFile := ss.IdentityToken(t, ns, "promoter")
	want := sign.Identity{Issuer: ss.Issuer, Subject: ss.Identity(ns, "promoter")}
	k := sign.Keyless{FulcioURL: ss.FulcioURL, IdentityToken: tokenFile, TSAURL: ss.TSAURL, TrustedRoot: ss.TrustedRoot}

	s, err := sign.NewKeylessSigner(k, registry.Client{})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := s.Identity(); !ok || id != want {
		t.Fatalf("Identity() = %+v, %v; want %+v", id, ok, want)
	}
	p := pushIndex(t, reg.Host+"/acme/keyless")
	got, err := s.Sign(ctx, p.tag)
	if err != nil {
		t.Fatalf("Sign(%s): %v", p.tag, err)
	}
	wantSigned := []sign.Signed{
		{Digest: p.index},
		{Digest: p.children["linux/amd64"], Platform: "linux/amd64"},
		{Digest: p.children["linux/arm64"], Platform: "linux/arm64"},
	}
	if diff := cmp.Diff(wantSigned, got); diff != "" {
		t.Fatalf("Sign: (-want +got)\n%s", diff)
	}

	e := keylessEnv{ss: ss, reg: reg, ns: ns, tokenFile: tokenFile, want: want, s: s, p: p}
	t.Run("the bundle carries the certificate and a timestamp that outlives it", e.bundleHasCertAndTimestamp)
	t.Run("signing again adds no signature", e.signingAgainAddsNothing)
	t.Run("the keyless verifier accepts this identity only", e.verifierAcceptsThisIdentityOnly)
	t.Run("the token is read for every signature", e.tokenReadForEverySignature)
}

// keylessEnv is what TestKeylessSign's parts share: the private sigstore stack and
// registry, the signer's identity and token file, the signer and the index it signed.
type keylessEnv struct {
	ss        *testenv.Sigstore
	reg       *localregistry.Registry
	ns        string        // the service account's namespace
	tokenFile string        // the identity token the signer reads
	want      sign.Identity // the signer's identity
	s         *sign.Signer
	p         pushed // the index s signed
}

// bundleHasCertAndTimestamp: the bundle carries the certificate and a timestamp that outlives it.
func (e keylessEnv) bundleHasCertAndTimestamp(t *testing.T) {
	bundles := testenv.SigstoreBundles(t, e.p.at(e.p.index))
	if len(bundles) != 1 {
		t.Fatalf("%d bundles for the index, want 1", len(bundles))
	}
	b := bundles[0]
	vc, err := b.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		t.Fatalf("verification material %v (%v), want a certificate", vc, err)
	}
	leaf := vc.Certificate()
	tr, err := root.NewTrustedRootFromPath(e.ss.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	// Signed timestamps only: no WithCurrentTime, no log. sigstore-go then validates
	// the certificate chain at the TSA's time, not the clock's, which is why the
	// signature keeps verifying after the 10-minute certificate has expired.
	v, err := verify.NewVerifier(tr, verify.WithSignedTimestamps(1))
	if err != nil {
		t.Fatal(err)
	}
	cid, err := verify.NewShortCertificateIdentity(e.want.Issuer, "", e.want.Subject, "")
	if err != nil {
		t.Fatal(err)
	}
	policy := verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithCertificateIdentity(cid))
	res, err := v.Verify(b, policy)
	if err != nil {
		t.Fatalf("verify with signed timestamps: %v", err)
	}
	if len(res.VerifiedTimestamps) != 1 || res.VerifiedTimestamps[0].Type != "TimestampAuthority" {
		t.Fatalf("verified timestamps %+v, want one of the TSA", res.VerifiedTimestamps)
	}
	ts := res.VerifiedTimestamps[0].Timestamp
	if ts.Before(leaf.NotBefore) || ts.After(leaf.NotAfter) {
		t.Fatalf("TSA time %s outside the certificate's validity %s..%s", ts, leaf.NotBefore, leaf.NotAfter)
	}
	t.Logf("certificate %s valid %s..%s (%s); TSA timestamp %s; verification used: %s",
		res.Signature.Certificate.SubjectAlternativeName, leaf.NotBefore.UTC(), leaf.NotAfter.UTC(),
		leaf.NotAfter.Sub(leaf.NotBefore), ts.UTC(), res.VerifiedTimestamps[0].Type)
	// Without the timestamp the same bundle proves nothing: the verifier has no time
	// at which to check the certificate.
	pb := proto.Clone(b.Bundle).(*protobundle.Bundle)
	pb.VerificationMaterial.TimestampVerificationData = nil
	stripped, err := sgbundle.NewBundle(pb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(stripped, policy); err == nil {
		t.Fatal("the bundle without its timestamp verified")
	} else {
		t.Logf("without its timestamp: %v", err)
	}
}

// signingAgainAddsNothing: signing again adds no signature.
func (e keylessEnv) signingAgainAddsNothing(t *testing.T) {
	ctx := context.Background()
	before := len(testenv.SigstoreBundles(t, e.p.at(e.p.index)))
	again, err := e.s.Sign(ctx, e.p.tag)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range again {
		if !d.Skipped {
			t.Errorf("%s (%s) signed again, want skipped", d.Digest, d.Platform)
		}
	}
	if after := len(testenv.SigstoreBundles(t, e.p.at(e.p.index))); after != before {
		t.Errorf("%d bundles after signing again, want %d", after, before)
	}
}

// verifierAcceptsThisIdentityOnly: the keyless verifier accepts this identity only.
func (e keylessEnv) verifierAcceptsThisIdentityOnly(t *testing.T) {
	ctx := context.Background()
	v, err := sign.NewKeylessVerifier(registry.Client{}, e.ss.TrustedRoot, e.want)
	if err != nil {
		t.Fatal(err)
	}
	checked, err := v.Verify(ctx, e.p.tag)
	if err != nil || len(checked) != 3 {
		t.Fatalf("Verify = %+v, %v; want 3 digests", checked, err)
	}
	other := sign.Identity{Issuer: e.ss.Issuer, Subject: e.ss.Identity(e.ns, "intruder")}
	v, err = sign.NewKeylessVerifier(registry.Client{}, e.ss.TrustedRoot, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(ctx, e.p.tag)
	if !errors.Is(err, sign.ErrBadSignature) || !strings.Contains(err.Error(), "certificate identity "+e.want.Subject+" from "+e.ss.Issuer+" does not match") {
		t.Fatalf("Verify as %s: %v, want ErrBadSignature naming %s", other, err, e.want)
	}
	t.Logf("as another identity: %v", err)
	// Nor does an unsigned image verify.
	q := pushIndex(t, e.reg.Host+"/acme/unsigned")
	v, err = sign.NewKeylessVerifier(registry.Client{}, e.ss.TrustedRoot, e.want)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, q.tag); !errors.Is(err, sign.ErrNoSignature) {
		t.Fatalf("Verify(unsigned) = %v, want ErrNoSignature", err)
	}
}

// tokenReadForEverySignature: the token is read for every signature.
func (e keylessEnv) tokenReadForEverySignature(t *testing.T) {
	ctx := context.Background()
	q := pushIndex(t, e.reg.Host+"/acme/rotated")
	// A fresh token of the same service account, as the kubelet writes it.
	fresh, err := os.ReadFile(e.ss.IdentityToken(t, e.ns, "promoter"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.tokenFile, fresh, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Sign(ctx, q.tag); err != nil {
		t.Fatalf("Sign with the rotated token: %v", err)
	}
	// A token of another service account in the file is read, and refused.
	other, err := os.ReadFile(e.ss.IdentityToken(t, e.ns, "intruder"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.tokenFile, other, 0o600)
	r := pushIndex(t, e.reg.Host+"/acme/other")
	if _, err := e.s.Sign(ctx, r.tag); err == nil || !strings.Contains(err.Error(), "now names "+e.ss.Identity(e.ns, "intruder")) {
		t.Fatalf("Sign with another identity's token: %v, want a refusal naming it", err)
	}
	os.Remove(e.tokenFile)
	if _, err := e.s.Sign(ctx, r.tag); err == nil || !strings.Contains(err.Error(), "reading identity token") {
		t.Fatalf("Sign without a token: %v, want a refusal naming the token", err)
	}
}
