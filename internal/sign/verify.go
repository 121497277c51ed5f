package sign

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// Verifier checks signatures offline, with public keys or keyless identities and their
// trusted root: no transparency log, no certificate authority, only the registry holding
// the image and its signatures.
type Verifier struct {
	signers []checker
	keyless int  // signers[:keyless] are keyless identities, the rest public keys
	own     bool // signers[0] is promoter's own identity (NewKeylessVerifier), so a refusal says how promoter signs
	reg     registry.Client
}

// Trusted is whom a Verifier accepts: a signature by any one of them verifies.
type Trusted struct {
	// Own is promoter's own keyless identity (Signer.Identity), when it signs keyless.
	Own *Identity
	// Identities are other keyless signers (types.TrustedSigner.Validate), by exact
	// subject or regexp: another promoter's, or promoter's previous service account.
	Identities []types.TrustedSigner
	// TrustedRoot is the sigstore trusted_root.json keyless certificates chain to; needed
	// with Own or Identities.
	TrustedRoot string
	// Keys are public keys (LoadVerifier loads one): during a key rotation, both.
	Keys []signature.Verifier
}

// NewTrustedVerifier verifies with everyone in t, reading images and signatures through
// reg. A keyless identity is accepted when a sigstore bundle's Fulcio certificate names
// it (issuer, and subject or subject regexp) and chains to a CA of the trusted root at a
// time one of its observers vouches for (an RFC 3161 timestamp of a timestamp authority,
// or a transparency log entry it lists), as `cosign verify --trusted-root
// --certificate-oidc-issuer --certificate-identity(-regexp)` does.
func NewTrustedVerifier(reg registry.Client, t Trusted) (*Verifier, error) {
	v := &Verifier{reg: reg, own: t.Own != nil}
	ids := t.Identities
	if t.Own != nil {
		ids = append([]types.TrustedSigner{t.Own.signer()}, ids...)
	}
	for _, s := range ids {
		kc, err := newKeylessChecker(t.TrustedRoot, s)
		if err != nil {
			return nil, fmt.Errorf("verifying: %w", err)
		}
		v.signers = append(v.signers, kc)
	}
	v.keyless = len(v.signers)
	for i, k := range t.Keys {
		if k == nil {
			return nil, fmt.Errorf("verifying: public key %d is not loaded", i+1)
		}
		v.signers = append(v.signers, keyChecker{v: k})
	}
	if len(v.signers) == 0 {
		return nil, errors.New("verifying: no public key or keyless identity given")
	}
	return v, nil
}

// NewVerifier verifies with the public keys keys (LoadVerifier loads one), reading images
// and signatures through reg. A digest verifies when any one of the keys signed it, so
// during a key rotation both the old and the new public key are listed.
func NewVerifier(reg registry.Client, keys ...signature.Verifier) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("verifying: no public key loaded")
	}
	return NewTrustedVerifier(reg, Trusted{Keys: keys})
}

// NewKeylessVerifier verifies what a keyless Signer signed: a sigstore bundle whose
// Fulcio certificate names id (Signer.Identity) and chains to a CA of the trusted root
// (a sigstore trusted_root.json file) at the time of an RFC 3161 timestamp of one of its
// timestamp authorities. A signature by any of keys is accepted too, as while moving
// from a key to keyless signing.
func NewKeylessVerifier(reg registry.Client, trustedRoot string, id Identity, keys ...signature.Verifier) (*Verifier, error) {
	return NewTrustedVerifier(reg, Trusted{Own: &id, TrustedRoot: trustedRoot, Keys: keys})
}

// NewIdentityVerifier verifies what any keyless signer of identity s signed (see
// NewTrustedVerifier). s must be keyless and valid (types.TrustedSigner.Validate). A
// signature by any of keys is accepted too.
func NewIdentityVerifier(reg registry.Client, trustedRoot string, s types.TrustedSigner, keys ...signature.Verifier) (*Verifier, error) {
	return NewTrustedVerifier(reg, Trusted{Identities: []types.TrustedSigner{s}, TrustedRoot: trustedRoot, Keys: keys})
}

// Checked reports one verified digest.
type Checked struct {
	// Digest is the verified manifest's digest, "sha256:<hex>".
	Digest string
	// Platform is the child's platform, "" for the index.
	Platform string
	// Format is the format of the signature that verified (bundle is tried first).
	Format Format
}

// Verify checks that every digest ref covers (the index and each platform child, or a
// lone image) has a signature, in either format, that verifies with the key and names
// that digest. It returns what verified before the first failure; a failed check is a
// *VerifyError wrapping ErrNoSignature, ErrBadSignature or ErrWrongDigest. Other errors
// (registry unreachable, image missing) are returned as they are.
func (v *Verifier) Verify(ctx context.Context, ref string) ([]Checked, error) {
	targets, err := resolve(ctx, v.reg, ref)
	if err != nil {
		return nil, fmt.Errorf("verifying: %w", err)
	}
	// Each digest is checked at once, as Sign writes them.
	formats := make([]Format, len(targets))
	errs := each(targets, func(i int, t target) (err error) {
		formats[i], err = v.verifyOne(ctx, t)
		return err
	})
	var out []Checked
	for i, t := range targets {
		if errs[i] != nil {
			return out, errs[i]
		}
		out = append(out, Checked{Digest: t.digest.DigestStr(), Platform: t.platform, Format: formats[i]})
	}
	return out, nil
}

func (v *Verifier) verifyOne(ctx context.Context, t target) (Format, error) {
	var stored int
	var other, reason string
	for _, f := range []Format{FormatBundle, FormatLegacy} {
		// The signatures stored are the same whichever signer checks them: count them once.
		inFormat := 0
		for _, s := range v.signers {
			c, err := s.lookup(ctx, v.reg, t, f)
			if err != nil {
				return "", fmt.Errorf("verifying %s: %w", t.digest, err)
			}
			if c.ok {
				return f, nil
			}
			inFormat = max(inFormat, c.stored)
			if c.other != "" {
				other = c.other
			}
			if c.reason != "" {
				reason = c.reason
			}
		}
		stored += inFormat
	}
	keys := v.describe()
	e := &VerifyError{Digest: t.digest.DigestStr(), Platform: t.platform}
	repo := t.digest.Context().String()
	switch {
	case stored == 0:
		e.Err = ErrNoSignature
		how := fmt.Sprintf("`promoter sign --key KEY %s`", t.digest)
		switch {
		case v.own:
			how = "promoter (sign: true)"
		case v.keyless > 0:
			how = "a keyless `cosign sign` as " + strings.TrimPrefix(v.signers[0].String(), "certificate ")
		}
		e.Detail = fmt.Sprintf("%s holds neither a sigstore bundle referrer nor a %s tag for it; sign it with %s",
			repo, sigTagName(t), how)
	case other != "":
		e.Err = ErrWrongDigest
		e.Detail = fmt.Sprintf("a signature by %s names %s: it was copied from another image; sign this digest with `promoter sign`", strings.TrimPrefix(keys, "any of "), other)
	default:
		e.Err = ErrBadSignature
		fix := "check that the key is the public half of the signing key, or re-sign"
		switch {
		case v.own:
			fix = "check sign.trustedRoot and the identity token, or re-sign"
		case v.keyless > 0:
			fix = "check the trusted root and the identity and issuer expected, or re-sign"
		}
		e.Detail = fmt.Sprintf("%d signature(s) found in %s, none verifies with %s (%s); %s",
			stored, repo, keys, reason, fix)
	}
	return "", e
}

// describe names the signers in a refusal: "this public key", "any of these 2 public
// keys", "certificate identity S from I", those identities joined with "or", then the
// keys.
func (v *Verifier) describe() string {
	var parts []string
	for _, s := range v.signers[:v.keyless] {
		parts = append(parts, s.String())
	}
	switch keys := len(v.signers) - v.keyless; {
	case keys == 1:
		parts = append(parts, "this public key")
	case keys > 1:
		parts = append(parts, fmt.Sprintf("any of these %d public keys", keys))
	}
	return strings.Join(parts, " or ")
}

func sigTagName(t target) string {
	return registry.AccessoryTag(t.digest.DigestStr(), registry.SignatureSuffix)
}
