package sign

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/in-toto/in-toto-golang/in_toto"
	slsa02 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.2"
	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// Sentinels returned (wrapped in *VerifyError) by Verifier.VerifyAttestation; test with
// errors.Is.
var (
	// ErrNoAttestation means no attestation of the predicate type asked for is stored
	// for the digest.
	ErrNoAttestation = errors.New("no attestation found")
	// ErrBadAttestation means attestations of that predicate type are stored, but none
	// is accepted: another signer signed it, it was altered, or it is about another
	// digest.
	ErrBadAttestation = errors.New("attestation not accepted")
)

// predicateTypes are the short names `cosign attest --type` and `cosign
// verify-attestation --type` take for predicate types: cosign's options.PredicateTypeMap
// (cmd/cosign/cli/options/predicate.go), built from the same constants. That package is
// not imported: it pulls cosign's CLI and its registry credential helpers in. cosign's
// own three (pkg/cosign/attestation's CosignCustomProvenanceV01, CosignVulnProvenanceV01,
// OpenVexNamespace) are written out: that package links two provenance predicate
// packages for them. TestPredicateType holds every URI.
var predicateTypes = map[string]string{
	"custom":           "https://cosign.sigstore.dev/attestation/v1",
	"slsaprovenance":   slsa02.PredicateSLSAProvenance,
	"slsaprovenance02": slsa02.PredicateSLSAProvenance,
	"slsaprovenance1":  slsa1.PredicateSLSAProvenance,
	"spdx":             in_toto.PredicateSPDX,
	"spdxjson":         in_toto.PredicateSPDX,
	"cyclonedx":        in_toto.PredicateCycloneDX,
	"link":             in_toto.PredicateLinkV1,
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
}

// PredicateTypeNames lists the short names PredicateType accepts, as cosign's --type
// help does.
const PredicateTypeNames = "slsaprovenance|slsaprovenance02|slsaprovenance1|link|spdx|spdxjson|cyclonedx|vuln|openvex|custom"

// PredicateType is the in-toto predicate type URI name stands for, as cosign's
// options.ParsePredicateType reads --type: one of cosign's short names
// (PredicateTypeNames: slsaprovenance1 is https://slsa.dev/provenance/v1), or a URI,
// returned as it is.
func PredicateType(name string) (string, error) {
	if uri, ok := predicateTypes[name]; ok {
		return uri, nil
	}
	if _, err := url.ParseRequestURI(name); err != nil {
		return "", refuse(ErrUnknownPredicateType, "predicate type %q: want a URI or one of %s", name, PredicateTypeNames)
	}
	return name, nil
}

// Attested reports one digest whose attestation verified.
type Attested struct {
	// Digest is the attested manifest's digest, "sha256:<hex>".
	Digest string
	// Platform is the child's platform, "" for the index.
	Platform string
	// Detail names the attestation and who signed it, as the verify policy's evidence
	// does: "attestation https://slsa.dev/provenance/v1, signed by key SHA256:…".
	Detail string
}

// VerifyAttestation checks that every digest ref covers (the index and each platform
// child, or a lone image, as Verify) carries an in-toto attestation of predicateType (a
// URI: PredicateType reads cosign's short names) that verifies with v's keys or keyless
// identity and whose statement's subject is that digest, as `cosign verify-attestation
// --type` does. It looks where the verify policy's required attestations are looked for:
// sigstore bundle referrers, and for keys also the legacy sha256-<hex>.att tag. No
// signature of the image is required. It returns what verified before the first
// failure; a failed check is a *VerifyError wrapping ErrNoAttestation or
// ErrBadAttestation. Other errors (registry unreachable, image missing) are returned as
// they are.
func (v *Verifier) VerifyAttestation(ctx context.Context, ref, predicateType string) ([]Attested, error) {
	if predicateType == "" {
		return nil, errors.New("verifying attestations: no predicate type")
	}
	p, err := v.policy()
	if err != nil {
		return nil, err
	}
	targets, err := resolve(ctx, v.reg, ref)
	if err != nil {
		return nil, fmt.Errorf("verifying: %w", err)
	}
	req := types.RequiredAttestation{PredicateType: predicateType}
	details := make([]string, len(targets))
	errs := each(targets, func(i int, t target) (err error) {
		details[i], err = v.attestationOf(ctx, p, t, req)
		return err
	})
	var out []Attested
	for i, t := range targets {
		if errs[i] != nil {
			return out, errs[i]
		}
		out = append(out, Attested{Digest: t.digest.DigestStr(), Platform: t.platform, Detail: details[i]})
	}
	return out, nil
}

// policy is the verify policy whose signers are v's (its keys, named by fingerprint, and
// its keyless identity with its trusted root), so attestations are checked by the same
// code as pipelines' required attestations.
func (v *Verifier) policy() (*Policy, error) {
	p := &Policy{reg: v.reg}
	for i, s := range v.signers {
		switch c := s.(type) {
		case keyChecker:
			pub, err := c.v.PublicKey()
			if err != nil {
				return nil, fmt.Errorf("reading public key %d: %w", i+1, err)
			}
			fp, err := fingerprint(pub)
			if err != nil {
				return nil, err
			}
			p.keys = append(p.keys, keySigner{v: c.v, fingerprint: fp, accepted: accepted{name: "key " + fp, index: i}})
		case *keylessChecker:
			p.keyless = c.kl
		default:
			return nil, fmt.Errorf("verifying attestations: signer %s cannot verify attestations", s)
		}
	}
	return p, nil
}

// attestationOf checks req on t with p and returns the detail of the attestation that
// verified.
func (v *Verifier) attestationOf(ctx context.Context, p *Policy, t target, req types.RequiredAttestation) (string, error) {
	// Unannotated referrers are read too: their statement says what they are.
	stored, err := readBundles(ctx, v.reg, t, func(pt string) bool { return pt == "" || pt == req.PredicateType })
	if err != nil {
		return "", fmt.Errorf("verifying %s: %w", t.digest, err)
	}
	detail, whys, err := p.attestation(ctx, t, openReferrers(stored), req, accepted{})
	if err != nil {
		return "", fmt.Errorf("verifying attestation %s of %s: %w", req.PredicateType, t.digest, err)
	}
	if detail != "" {
		return detail, nil
	}
	e := &VerifyError{Digest: t.digest.DigestStr(), Platform: t.platform}
	repo := t.digest.Context().String()
	if len(whys) == 0 {
		where := "no sigstore bundle referrer"
		if len(p.keys) > 0 {
			where += " and no " + registry.AccessoryTag(t.digest.DigestStr(), registry.AttestationSuffix) + " tag"
		}
		e.Err = ErrNoAttestation
		e.Detail = fmt.Sprintf("%s holds no in-toto attestation of type %s about it (%s); attest it with `cosign attest --type %s --predicate FILE %s`",
			repo, req.PredicateType, where, req.PredicateType, t.digest)
		return "", e
	}
	e.Err = ErrBadAttestation
	e.Detail = fmt.Sprintf("%d attestation(s) of type %s found in %s, none verifies with %s and names this digest: %s",
		len(whys), req.PredicateType, repo, v.describe(), summarize(whys))
	return "", e
}
