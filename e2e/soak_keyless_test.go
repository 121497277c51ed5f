package e2e

import (
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestKillSoakKeyless is the kill soak with promoter signing keyless (issue 23): no key,
// a Fulcio certificate for its "promoter" service account's token from a real
// kube-apiserver, and an RFC 3161 timestamp, against the private sigstore stack. Every
// digest must carry exactly one keyless bundle of promoter's identity, however often the
// sign step was killed and redone, and the cosign CLI verifies every digest at each
// destination with that identity, refusing another once. The soak's size is the key
// soak's; the identity token is valid for 10 minutes, far longer than the soak runs.
func TestKillSoakKeyless(t *testing.T) {
	killSoak(t, keylessSoak(t))
}

// keylessSoak starts a kube-apiserver as the OIDC issuer, Fulcio and a timestamp
// authority, and signs as the service account promoter-system/promoter; destinations
// check promoter's keyless signature against sign.trustedRoot (requireSignature: true).
func keylessSoak(t *testing.T) soakSigning {
	t.Helper()
	kube := testenv.StartKube(t, testenv.WithPublicIssuer())
	ss := testenv.StartSigstore(t, kube)
	cosign := testenv.Tool(t, "cosign")
	const ns = "promoter-system"
	identity, other := ss.Identity(ns, "promoter"), ss.Identity(ns, "intruder")
	token := ss.IdentityToken(t, ns, "promoter")
	return soakSigning{
		mode:   "keyless",
		config: withKeylessSigning(signConfig{FulcioURL: ss.FulcioURL, IdentityToken: token, TSAURL: ss.TSAURL, TrustedRoot: ss.TrustedRoot}),
		kills:  soakKills, revisions: soakRevisions,
		own: func(t *testing.T, ref string) int { return keylessSignatures(t, ref, identity) },
		verify: func(t *testing.T, ref string) {
			t.Helper()
			if out, err := cosignVerifyKeyless(t, cosign, ss, ref, identity); err != nil {
				t.Errorf("cosign verify %s as %s: %v\n%s", ref, identity, err, out)
			}
		},
		refuse: func(t *testing.T, ref string) {
			t.Helper()
			if out, err := cosignVerifyKeyless(t, cosign, ss, ref, other); err == nil || !strings.Contains(out, "no matching CertificateIdentity") {
				t.Errorf("cosign verify %s as %s: %v, want \"no matching CertificateIdentity\"\n%s", ref, other, err, out)
			}
		},
	}
}

// keylessSignatures counts the keyless sigstore bundles on ref (repo@digest): those with a
// certificate, all of which must be identity's (CI's key bundles have none).
func keylessSignatures(t *testing.T, ref, identity string) int {
	t.Helper()
	n := 0
	for _, b := range testenv.SigstoreBundles(t, ref) {
		vc, err := b.VerificationContent()
		if err != nil {
			t.Errorf("bundle on %s: %v", ref, err)
			continue
		}
		leaf := vc.Certificate()
		if leaf == nil {
			continue
		}
		n++
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != identity {
			t.Errorf("a keyless bundle on %s is signed by %v, want %s", ref, leaf.URIs, identity)
		}
	}
	return n
}
