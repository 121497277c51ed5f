package sign_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPredicateType: cosign's --type names mean what they mean to cosign; a URI is taken
// as it is.
func TestPredicateType(t *testing.T) {
	tests := []struct {
		name, want string
		wantErr    error
	}{
		{name: "slsaprovenance1", want: "https://slsa.dev/provenance/v1"},
		{name: "slsaprovenance", want: "https://slsa.dev/provenance/v0.2"},
		{name: "slsaprovenance02", want: "https://slsa.dev/provenance/v0.2"},
		{name: "link", want: "https://in-toto.io/Link/v1"},
		{name: "spdx", want: "https://spdx.dev/Document"},
		{name: "spdxjson", want: "https://spdx.dev/Document"},
		{name: "cyclonedx", want: "https://cyclonedx.org/bom"},
		{name: "vuln", want: "https://cosign.sigstore.dev/attestation/vuln/v1"},
		{name: "openvex", want: "https://openvex.dev/ns"},
		{name: "custom", want: "https://cosign.sigstore.dev/attestation/v1"},
		{name: "https://acme.dev/review/v1", want: "https://acme.dev/review/v1"},
		{name: "slsa", wantErr: sign.ErrUnknownPredicateType},
		{name: "", wantErr: sign.ErrUnknownPredicateType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sign.PredicateType(tt.name)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("PredicateType(%q) = %q, %v; want %v", tt.name, got, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				// The message lists cosign's names: that is what tells the user the fix.
				if !strings.Contains(err.Error(), sign.PredicateTypeNames) {
					t.Errorf("PredicateType(%q): %q does not list the names", tt.name, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("PredicateType(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		})
	}
}

// TestVerifyAttestation: every digest an index covers must carry an attestation of the
// type asked for, by an accepted signer, about that very digest; the first that does not
// is named with its platform and why.
func TestVerifyAttestation(t *testing.T) {
	reg := testenv.StartRegistry(t)
	s := newSigstore(t)
	a, b := newKeys(t, "a"), newKeys(t, "b")
	const spdx = "https://spdx.dev/Document"
	keyless := func(subject string) func(t *testing.T) *sign.Verifier {
		return func(t *testing.T) *sign.Verifier {
			v, err := sign.NewIdentityVerifier(registry.Client{}, s.root, types.TrustedSigner{Issuer: testIssuer, Subject: subject})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	withKeys := func(ks ...keys) func(t *testing.T) *sign.Verifier {
		return func(t *testing.T) *sign.Verifier {
			var vs []signature.Verifier
			for _, k := range ks {
				vs = append(vs, k.verifier)
			}
			v, err := sign.NewVerifier(registry.Client{}, vs...)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	tests := []struct {
		name     string
		setup    func(t *testing.T, img archImage) archImage // on the index and each child
		skip     string                                      // the platform left out of setup
		verifier func(t *testing.T) *sign.Verifier
		// On success, each digest's detail; on failure, the sentinel, the platform named
		// (the one skipped, else the index: "") and what the error says.
		wantDetail string
		wantErr    error
		wantIn     []string
	}{{
		name:       "attested by the key",
		setup:      attestedWith(a, slsaV1, testBuilder),
		verifier:   withKeys(a),
		wantDetail: "attestation " + slsaV1 + ", signed by key " + fingerprint(t, a),
	}, {
		name:       "legacy .att attestations",
		setup:      legacyAttestedWith(a, slsaV1, testBuilder),
		verifier:   withKeys(a),
		wantDetail: "attestation " + slsaV1 + ", signed by key " + fingerprint(t, a),
	}, {
		name:       "attested by the new key of a rotation",
		setup:      attestedWith(b, slsaV1, testBuilder),
		verifier:   withKeys(a, b),
		wantDetail: "attestation " + slsaV1 + ", signed by key " + fingerprint(t, b),
	}, {
		name:       "keyless",
		setup:      keylessAttested(s, testSubject, testIssuer, slsaV1, testBuilder),
		verifier:   keyless(testSubject),
		wantDetail: "attestation " + slsaV1 + ", signed by " + testSubject + " from " + testIssuer,
	}, {
		name:     "a child not attested",
		setup:    attestedWith(a, slsaV1, testBuilder),
		skip:     "linux/arm64",
		verifier: withKeys(a),
		wantErr:  sign.ErrNoAttestation,
		wantIn:   []string{"(linux/arm64)", "no in-toto attestation of type " + slsaV1, "no sigstore bundle referrer and no sha256-", ".att tag", "cosign attest --type " + slsaV1},
	}, {
		name:     "attested by another key",
		setup:    attestedWith(b, slsaV1, testBuilder),
		verifier: withKeys(a),
		wantErr:  sign.ErrBadAttestation,
		wantIn:   []string{"1 attestation(s) of type " + slsaV1, "none verifies with this public key", "signed by key " + fingerprint(t, b)},
	}, {
		name:     "legacy .att by another key",
		setup:    legacyAttestedWith(b, slsaV1, testBuilder),
		verifier: withKeys(a),
		wantErr:  sign.ErrBadAttestation,
		wantIn:   []string{"verifies with no key"},
	}, {
		name:     "another identity",
		setup:    keylessAttested(s, "intruder@acme.dev", testIssuer, slsaV1, testBuilder),
		verifier: keyless(testSubject),
		wantErr:  sign.ErrBadAttestation,
		wantIn:   []string{"certificate identity intruder@acme.dev from " + testIssuer + " does not match"},
	}, {
		name:     "another predicate type",
		setup:    attestedWith(a, spdx, ""),
		verifier: withKeys(a),
		wantErr:  sign.ErrNoAttestation,
		wantIn:   []string{"no in-toto attestation of type " + slsaV1},
	}, {
		name:     "a signature is no attestation",
		setup:    signedWith(a, sign.FormatBundle),
		verifier: withKeys(a),
		wantErr:  sign.ErrNoAttestation,
	}, {
		name:     "copied from another digest",
		setup:    copiedAttestation(a, slsaV1, testBuilder),
		verifier: withKeys(a),
		wantErr:  sign.ErrBadAttestation,
		wantIn:   []string{"is about sha256:", "copied from another image"},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pushIndex(t, reg.Host+"/acme/attest-"+string(rune('a'+i)))
			want := map[string]string{p.index: ""} // digest → platform
			for plat, d := range p.children {
				want[d] = plat
			}
			for d, plat := range want {
				if tt.skip == "" || plat != tt.skip {
					tt.setup(t, archImage{repo: p.repo, digest: d, ref: digestRef(t, p.repo, d)})
				}
			}
			got, err := tt.verifier(t).VerifyAttestation(context.Background(), p.tag, slsaV1)
			if tt.wantErr != nil {
				checkRefused(t, err, tt.wantErr, want, tt.skip, tt.wantIn)
				return
			}
			if err != nil {
				t.Fatalf("VerifyAttestation: %v", err)
			}
			checkVerified(t, got, want, tt.wantDetail)
		})
	}
}

// checkRefused checks err is a *VerifyError wrapping wantErr that names the digest of
// platform skip (of want, digest → platform; "" is the index) and says each of wantIn.
func checkRefused(t *testing.T, err, wantErr error, want map[string]string, skip string, wantIn []string) {
	t.Helper()
	var ve *sign.VerifyError
	if !errors.Is(err, wantErr) || !errors.As(err, &ve) {
		t.Fatalf("VerifyAttestation: got %v, want a *VerifyError wrapping %v", err, wantErr)
	}
	t.Logf("error: %v", err)
	if ve.Platform != skip || want[ve.Digest] != skip {
		t.Errorf("error names %s (%s), want the digest of %q", ve.Digest, ve.Platform, skip)
	}
	for _, w := range wantIn {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

// checkVerified checks got is the index and both platforms of want (digest → platform),
// not the attestation manifest, each with wantDetail.
func checkVerified(t *testing.T, got []sign.Attested, want map[string]string, wantDetail string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("VerifyAttestation = %+v, want %d digests", got, len(want))
	}
	for _, g := range got {
		if plat, ok := want[g.Digest]; !ok || plat != g.Platform {
			t.Errorf("verified %s (%s), want one of %v", g.Digest, g.Platform, want)
		}
		if g.Detail != wantDetail {
			t.Errorf("%s: detail %q, want %q", g.Digest, g.Detail, wantDetail)
		}
	}
}
