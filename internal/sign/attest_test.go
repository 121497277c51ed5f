package sign_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/sigstore/cosign/v3/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/cosign/v3/pkg/oci/static"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

const (
	slsaV1      = "https://slsa.dev/provenance/v1"
	slsaV02     = "https://slsa.dev/provenance/v0.2"
	testBuilder = "https://github.com/acme/builders/.github/workflows/build.yml@refs/tags/v1"
)

// provenance is a SLSA provenance predicate of predicateType naming builder.
func provenance(predicateType, builder string) map[string]any {
	if predicateType == slsaV02 {
		return map[string]any{"builder": map[string]any{"id": builder}, "buildType": "https://acme.dev/build/v1"}
	}
	return map[string]any{
		"buildDefinition": map[string]any{"buildType": "https://acme.dev/build/v1"},
		"runDetails":      map[string]any{"builder": map[string]any{"id": builder}},
	}
}

// attestedWith attests img's digest with k in the bundle format, as cosign attest --key
// does.
func attestedWith(k keys, predicateType, builder string) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		if err := sign.WriteStatement(context.Background(), k.signer, img.ref, predicateType, provenance(predicateType, builder)); err != nil {
			t.Fatalf("attesting %s: %v", img, err)
		}
		return img
	}
}

// copiedAttestation attests another image of the same repository with k and makes its
// bundle referrers appear as img's: the fallback tag index re-tagged, as copySignature
// does for signatures.
func copiedAttestation(k keys, predicateType, builder string) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		other := attestedWith(k, predicateType, builder)(t, pushArch(t, img.repo))
		copySignature(t, img.repo, other.digest, img.digest, sign.FormatBundle)
		return img
	}
}

// legacyAttestedWith attests img with k in cosign's legacy format: a DSSE envelope as a
// layer of the sha256-<hex>.att image, its predicate type in a layer annotation.
func legacyAttestedWith(k keys, predicateType, builder string) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		body := statement(t, img.digest, predicateType, provenance(predicateType, builder))
		env, err := sigdsse.WrapSigner(k.signer, ctypes.IntotoPayloadType).SignMessage(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		att, err := static.NewAttestation(env, static.WithLayerMediaType(ctypes.DssePayloadType),
			static.WithAnnotations(map[string]string{"predicateType": predicateType}))
		if err != nil {
			t.Fatal(err)
		}
		se, err := ociremote.SignedEntity(img.ref)
		if err != nil {
			t.Fatal(err)
		}
		if se, err = mutate.AttachAttestationToEntity(se, att); err != nil {
			t.Fatal(err)
		}
		if err := ociremote.WriteAttestations(img.ref.Repository, se); err != nil {
			t.Fatalf("pushing the attestation of %s: %v", img, err)
		}
		return img
	}
}

// keylessAttested attests img with a fresh certificate for subject from issuer.
func keylessAttested(s fakeSigstore, subject, issuer, predicateType, builder string) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		pushBundle(t, img, s.bundle(t, subject, issuer, img.digest, predicateType, provenance(predicateType, builder), stamped), predicateType)
		return img
	}
}

// steps runs setups in order.
func steps(setups ...func(t *testing.T, img archImage) archImage) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		for _, s := range setups {
			img = s(t, img)
		}
		return img
	}
}

func TestPolicyAttestations(t *testing.T) {
	reg := testenv.StartRegistry(t)
	s := newSigstore(t)
	a, b := newKeys(t, "a"), newKeys(t, "b")
	ci := types.TrustedSigner{Issuer: testIssuer, Subject: testSubject}
	keyA := []types.TrustedSigner{{Key: a.pub}}
	provV1 := []types.RequiredAttestation{{PredicateType: slsaV1, BuilderID: testBuilder}}
	tests := []struct {
		name         string
		signers      []types.TrustedSigner
		attestations []types.RequiredAttestation
		setup        func(t *testing.T, img archImage) archImage
		wantSigner   string
		wantDetail   string
		wantFound    []string
	}{{
		name:         "SLSA v1 provenance by the builder",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatBundle), attestedWith(a, slsaV1, testBuilder)),
		wantSigner:   keyName(t, a),
		wantDetail:   "attestation " + slsaV1 + " by builder " + testBuilder,
	}, {
		name:         "SLSA v0.2 provenance by the builder",
		signers:      keyA,
		attestations: []types.RequiredAttestation{{PredicateType: slsaV02, BuilderID: testBuilder}},
		setup:        steps(signedWith(a, sign.FormatLegacy), attestedWith(a, slsaV02, testBuilder)),
		wantSigner:   keyName(t, a),
		wantDetail:   "attestation " + slsaV02 + " by builder " + testBuilder,
	}, {
		name:         "any builder",
		signers:      keyA,
		attestations: []types.RequiredAttestation{{PredicateType: slsaV1}},
		setup:        steps(signedWith(a, sign.FormatBundle), attestedWith(a, slsaV1, "https://elsewhere.example")),
		wantSigner:   keyName(t, a),
		wantDetail:   "attestation " + slsaV1,
	}, {
		name:         "attested by another signer of the policy",
		signers:      []types.TrustedSigner{{Key: a.pub}, {Key: b.pub}},
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatBundle), attestedWith(b, slsaV1, testBuilder)),
		wantSigner:   keyName(t, a),
		wantDetail:   "attestation " + slsaV1 + " by builder " + testBuilder + ", signed by " + keyName(t, b),
	}, {
		name:         "legacy .att attestation",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatLegacy), legacyAttestedWith(a, slsaV1, testBuilder)),
		wantSigner:   keyName(t, a),
		wantDetail:   "attestation " + slsaV1 + " by builder " + testBuilder,
	}, {
		name:         "keyless signature and attestation",
		signers:      []types.TrustedSigner{ci},
		attestations: provV1,
		setup: steps(keylessSigned(s, testSubject, testIssuer, "", stamped),
			keylessAttested(s, testSubject, testIssuer, slsaV1, testBuilder)),
		wantSigner: "ci@acme.dev from https://issuer.acme.dev",
		wantDetail: "attestation " + slsaV1 + " by builder " + testBuilder,
	}, {
		name:         "missing",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatBundle), attestedWith(a, "https://spdx.dev/Document", "")),
		wantFound:    []string{"attestation " + slsaV1 + " missing"},
	}, {
		name:         "another builder",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatBundle), attestedWith(a, slsaV1, "https://evil.example/builder")),
		wantFound:    []string{"attestation " + slsaV1 + " not accepted", "names builder https://evil.example/builder, want " + testBuilder},
	}, {
		name:         "attested by a key not in the policy",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatBundle), attestedWith(b, slsaV1, testBuilder)),
		wantFound:    []string{"attestation " + slsaV1 + " not accepted", "signed by key " + fingerprint(t, b) + ", not in the policy"},
	}, {
		name:         "legacy .att by a key not in the policy",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(signedWith(a, sign.FormatBundle), legacyAttestedWith(b, slsaV1, testBuilder)),
		wantFound:    []string{"attestation " + slsaV1 + " not accepted", "verifies with no key of the policy"},
	}, {
		name:         "attestation copied from another digest",
		signers:      keyA,
		attestations: provV1,
		setup:        steps(copiedAttestation(a, slsaV1, testBuilder), signedWith(a, sign.FormatLegacy)),
		wantFound:    []string{"attestation " + slsaV1 + " not accepted", "is about sha256:", "copied from another image"},
	}, {
		name:         "attested but not signed",
		signers:      keyA,
		attestations: provV1,
		setup:        attestedWith(a, slsaV1, testBuilder),
		wantFound:    []string{"no signature"},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.setup(t, pushArch(t, reg.Host+"/ci/attest-"+string(rune('a'+i))))
			p := types.VerifyPolicy{Signers: tt.signers, Attestations: tt.attestations, TrustedRoot: s.root}
			checkVerify(t, p, img, tt.wantSigner, tt.wantDetail, tt.wantFound)
		})
	}
}
