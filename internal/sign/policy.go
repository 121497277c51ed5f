package sign

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v3/pkg/oci"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/signature"
	"k8s.io/client-go/kubernetes"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// Policy is the trust policy of images promoter did not build itself: it accepts an image
// when a signer of the policy signed exactly its digest and, when the policy requires
// attestations, each is a signed in-toto statement about that digest. It is safe for
// concurrent use.
type Policy struct {
	reg          registry.Client
	keys         []keySigner
	keyless      *keyless // nil when the policy has neither keyless signers nor a trusted root
	expected     []string // each signer as types.TrustedSigner.String names it
	attestations []types.RequiredAttestation
}

// keySigner is a public key of the policy.
type keySigner struct {
	v           signature.Verifier
	fingerprint string // see fingerprint
	accepted
}

// accepted is a signer of the policy whose signature verified.
type accepted struct {
	// name is what Evidence.Signer says: "key <ref> (SHA256:<fingerprint>)" or
	// "<certificate subject> from <issuer>".
	name string
	// index is the signer's place in the policy: when several signed, the first listed
	// is reported, whatever order the registry lists signatures in.
	index int
}

// NewPolicy checks p (types.VerifyPolicy.Validate: a *types.PolicyError, errors.Is
// types.ErrInvalidPolicy), then loads its public keys (LoadVerifier: a PEM file,
// env://NAME or k8s://namespace/name; kube is only needed for k8s://) and its trusted root
// (a sigstore trusted_root.json, needed by keyless signers). An error names the signer or
// attestation by its index in p and says what to fix.
func NewPolicy(ctx context.Context, p types.VerifyPolicy, reg registry.Client, kube kubernetes.Interface) (*Policy, error) {
	if !p.Enabled() {
		return nil, errors.New("verify policy: no signers: list the public keys or keyless identities whose signatures are accepted")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("verify policy: %w", err)
	}
	pol := &Policy{reg: reg}
	var ids []identity
	for i, s := range p.Signers {
		pol.expected = append(pol.expected, s.String())
		if s.Keyless() {
			id, err := newIdentity(s, i)
			if err != nil {
				return nil, fmt.Errorf("verify policy: signers[%d] (%s): %w", i, s, err)
			}
			ids = append(ids, id)
			continue
		}
		k, err := loadKeySigner(ctx, s, i, kube)
		if err != nil {
			return nil, fmt.Errorf("verify policy: signers[%d] (%s): %w", i, s, err)
		}
		pol.keys = append(pol.keys, k)
	}
	if p.TrustedRoot != "" {
		kl, err := newKeyless(p.TrustedRoot, ids)
		if err != nil {
			return nil, fmt.Errorf("verify policy: %w", err)
		}
		pol.keyless = kl
	}
	pol.attestations = slices.Clone(p.Attestations)
	return pol, nil
}

func loadKeySigner(ctx context.Context, s types.TrustedSigner, index int, kube kubernetes.Interface) (keySigner, error) {
	v, err := LoadVerifier(ctx, s.Key, kube)
	if err != nil {
		return keySigner{}, err
	}
	pub, err := v.PublicKey()
	if err != nil {
		return keySigner{}, fmt.Errorf("reading public key %s: %w", s.Key, err)
	}
	fp, err := fingerprint(pub)
	if err != nil {
		return keySigner{}, err
	}
	return keySigner{v: v, fingerprint: fp, accepted: accepted{name: fmt.Sprintf("key %s (%s)", s.Key, fp), index: index}}, nil
}

// keyDigest is the SHA-256 of a public key's DER (PKIX) encoding: what cosign's bundle
// key hint encodes.
func keyDigest(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:], nil
}

// fingerprint names a public key the way ssh-keygen -l does: "SHA256:" and the unpadded
// base64 of keyDigest. It is the bundle key hint cosign writes without its padding, so
// the key a foreign bundle names can be reported in the same form (hintFingerprint).
func fingerprint(pub crypto.PublicKey) (string, error) {
	sum, err := keyDigest(pub)
	if err != nil {
		return "", err
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum), nil
}

// hintFingerprint converts a bundle's public key hint to a fingerprint; a hint of
// another scheme is returned as it is, and no hint as "".
func hintFingerprint(hint string) string {
	sum, err := base64.StdEncoding.DecodeString(hint)
	if err != nil || len(sum) != sha256.Size {
		return hint
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum)
}

// Verify checks ref, an image by digest ("repo@sha256:<hex>"), against the policy. It
// is accepted when any signer of the policy has a valid signature over exactly that
// digest (a sigstore bundle referrer, or for keys also a legacy sha256-<hex>.sig
// signature) and each required attestation is a signed in-toto statement about the
// digest by a signer of the policy (not necessarily the one that signed the image),
// with the predicate type and, when set, the SLSA builder id. It returns the evidence
// for the revision's state. A refusal is an *UntrustedError (errors.Is ErrUntrusted);
// a registry that cannot be read is a plain error, to be retried.
func (p *Policy) Verify(ctx context.Context, ref string) (types.Evidence, error) {
	t, err := p.target(ref)
	if err != nil {
		return types.Evidence{}, err
	}
	stored, err := readBundles(ctx, p.reg, t, p.wanted)
	if err != nil {
		return types.Evidence{}, fmt.Errorf("verifying %s: %w", ref, err)
	}
	refs := openReferrers(stored)
	verdicts, err := p.signatures(ctx, t, refs)
	if err != nil {
		return types.Evidence{}, fmt.Errorf("verifying %s: %w", ref, err)
	}
	signer, err := p.accept(t, verdicts)
	if err != nil {
		return types.Evidence{}, err
	}
	detail, err := p.attested(ctx, t, refs, signer)
	if err != nil {
		return types.Evidence{}, err
	}
	return types.Evidence{Kind: types.EvidenceSignature, Digest: t.digest.DigestStr(), Signer: signer.name, Detail: detail}, nil
}

func (p *Policy) target(ref string) (target, error) {
	r, err := p.reg.ParseReference(ref)
	if err != nil {
		return target{}, fmt.Errorf("verifying: %w", err)
	}
	d, ok := r.(name.Digest)
	if !ok {
		return target{}, fmt.Errorf("verifying %s: want an image by digest, repo@sha256:<hex>", ref)
	}
	return target{digest: d}, nil
}

// wanted are the bundle referrers Verify reads: signatures and required attestations.
func (p *Policy) wanted(predicateType string) bool {
	return isSignatureType(predicateType) || slices.ContainsFunc(p.attestations, func(a types.RequiredAttestation) bool {
		return a.PredicateType == predicateType
	})
}

// referrer is one bundle referrer of the digest, parsed.
type referrer struct {
	storedBundle
	openedBundle
	reason string // why it cannot be parsed
}

func openReferrers(stored []storedBundle) []referrer {
	out := make([]referrer, len(stored))
	for i, sb := range stored {
		ob, reason := openBundle(sb.raw)
		out[i] = referrer{storedBundle: sb, openedBundle: ob, reason: reason}
	}
	return out
}

// isSignature reports whether r counts as a signature: by its statement when it could be
// parsed, by its annotation when not.
func (r referrer) isSignature() bool {
	if r.reason != "" {
		return isSignatureType(r.annotated)
	}
	return r.openedBundle.isSignature()
}

// verdict is what one stored signature says under the policy.
type verdict struct {
	signer   accepted // set when why is ""
	subjects []string // the digests it signs, when why is ""
	why      string   // why no signer of the policy verifies it
}

// signatures judges each stored signature of t: the bundle referrers among refs, then
// the legacy .sig signatures.
func (p *Policy) signatures(ctx context.Context, t target, refs []referrer) ([]verdict, error) {
	var out []verdict
	for _, r := range refs {
		switch {
		case !r.isSignature():
		case r.reason != "":
			out = append(out, verdict{why: fmt.Sprintf("bundle %s: %s", r.digest, r.reason)})
		default:
			who, why := p.bundleSigner(ctx, r.bundle)
			out = append(out, verdict{signer: who, subjects: r.subjects, why: why})
		}
	}
	tag, list, err := readLegacy(ctx, p.reg, t)
	if err != nil {
		return nil, err
	}
	for i, sig := range list {
		v, err := p.legacyVerdict(ctx, sig)
		if err != nil {
			return nil, fmt.Errorf("reading signature payload %s layer %d: %w", tag, i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// bundleSigner returns the signer of the policy whose signature b carries, or why none
// does. Whose it can be is decided by b's verification material: a certificate is
// checked against the keyless signers, a public key against the keys.
func (p *Policy) bundleSigner(ctx context.Context, b *sgbundle.Bundle) (accepted, string) {
	vc, err := b.VerificationContent()
	if err != nil {
		return accepted{}, fmt.Sprintf("unreadable verification material: %v", err)
	}
	if leaf := vc.Certificate(); leaf != nil {
		return p.keyless.signed(b, leaf)
	}
	var hint string
	if pk := vc.PublicKey(); pk != nil {
		hint = pk.Hint()
	}
	return p.keySigned(ctx, b, hintFingerprint(hint))
}

// keySigned tries every key of the policy on b, whose hint names the signing key (a
// claim, not a proof: the key that verifies decides).
func (p *Policy) keySigned(ctx context.Context, b *sgbundle.Bundle, hint string) (accepted, string) {
	for _, k := range p.keys {
		err := verifyKeyBundle(ctx, k.v, b)
		if err == nil {
			return k.accepted, ""
		}
		if hint == k.fingerprint {
			return accepted{}, fmt.Sprintf("a signature naming %s does not verify with it (altered?): %v", k.name, err)
		}
	}
	if hint == "" {
		return accepted{}, "signed by a key not in the policy (the bundle does not name its key)"
	}
	return accepted{}, fmt.Sprintf("signed by key %s, not in the policy", hint)
}

// legacyVerdict judges one layer of the .sig tag: verified with each key of the policy.
// err is a registry error reading its payload.
func (p *Policy) legacyVerdict(ctx context.Context, sig oci.Signature) (verdict, error) {
	if cert, err := sig.Cert(); err == nil && cert != nil {
		return verdict{why: fmt.Sprintf("a legacy .sig keyless signature by %s: keyless signatures are verified as sigstore bundles only (cosign v3's default format)", certIdentity(cert))}, nil
	}
	body, raw, reason, err := legacyPayload(sig)
	if err != nil {
		return verdict{}, err
	}
	if reason != "" {
		return verdict{why: "legacy .sig signature: " + reason}, nil
	}
	for _, k := range p.keys {
		if named, why := verifyLegacy(ctx, k.v, body, raw); why == "" {
			return verdict{signer: k.accepted, subjects: []string{named}}, nil
		} else if len(p.keys) == 1 {
			reason = fmt.Sprintf("a legacy .sig signature that does not verify with %s: %s", k.name, why)
		}
	}
	if reason == "" {
		reason = "a legacy .sig signature that verifies with no key of the policy"
	}
	return verdict{why: reason}, nil
}

// accept picks the signer of the first-listed signer among the signatures that verify
// and name t's digest, or says why there is none.
func (p *Policy) accept(t target, vs []verdict) (accepted, error) {
	best := accepted{index: -1}
	var whys []string
	for _, v := range vs {
		switch {
		case v.why != "":
			whys = append(whys, v.why)
		case !slices.Contains(v.subjects, t.digest.DigestStr()):
			whys = append(whys, fmt.Sprintf("a signature by %s names %s: it was copied from another image", v.signer.name, strings.Join(v.subjects, ", ")))
		case best.index < 0 || v.signer.index < best.index:
			best = v.signer
		}
	}
	if best.index >= 0 {
		return best, nil
	}
	if len(vs) == 0 {
		return accepted{}, p.untrusted(t, fmt.Sprintf("no signature (no sigstore bundle referrer, no %s tag)", sigTagName(t)))
	}
	return accepted{}, p.untrusted(t, fmt.Sprintf("%d signature(s), none by an accepted signer: %s", len(vs), summarize(whys)))
}

func (p *Policy) untrusted(t target, found string) *UntrustedError {
	return &UntrustedError{
		Image:    t.digest.Context().String(),
		Digest:   t.digest.DigestStr(),
		Expected: slices.Clone(p.expected),
		Found:    found,
	}
}

// maxReasons bounds the reasons an error lists, so a digest with many foreign
// signatures still gets a one-line error.
const maxReasons = 4

// summarize joins distinct reasons, in order, on one line.
func summarize(whys []string) string {
	var distinct []string
	for _, w := range whys {
		if !slices.Contains(distinct, w) {
			distinct = append(distinct, w)
		}
	}
	if len(distinct) <= maxReasons {
		return strings.Join(distinct, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(distinct[:maxReasons], "; "), len(distinct)-maxReasons)
}
