package sign

import (
	"crypto/x509"
	"errors"
	"fmt"

	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/promoter-dev/promoter/internal/types"
)

// identity is a keyless signer of the policy: a certificate identity as sigstore-go
// matches it (exact issuer; exact subject or an unanchored regexp, as cosign's
// --certificate-identity-regexp).
type identity struct {
	id    verify.CertificateIdentity
	index int // in the policy's signers
}

// newIdentity is s, a keyless signer types.TrustedSigner.Validate accepted, as
// sigstore-go matches it.
func newIdentity(s types.TrustedSigner, index int) (identity, error) {
	id, err := verify.NewShortCertificateIdentity(s.Issuer, "", s.Subject, s.SubjectRegexp)
	if err != nil {
		return identity{}, fmt.Errorf("subjectRegexp %q: %w", s.SubjectRegexp, err)
	}
	return identity{id: id, index: index}, nil
}

// keyless verifies bundles signed with a short-lived (Fulcio) certificate: its chain to
// a CA of the trusted root, at a time an observer of the trusted root vouches for (an
// RFC 3161 timestamp of a timestamp authority, or the integrated time of a
// transparency log entry), and its identity against the policy's.
type keyless struct {
	ids []identity
	// logged verifies a bundle's transparency log entries too, so their integrated time
	// counts as the observer's (public-good Sigstore's usual proof of time); stamped
	// needs an RFC 3161 timestamp and ignores any log entry.
	logged, stamped *verify.Verifier
	// tr is the trusted root both verify against.
	tr root.TrustedMaterial
}

func newKeyless(trustedRoot string, ids []identity) (*keyless, error) {
	tr, err := root.NewTrustedRootFromPath(trustedRoot)
	if err != nil {
		return nil, refuse(ErrTrustedRoot, "loading trusted root %s (want a sigstore trusted_root.json): %w", trustedRoot, err)
	}
	logged, err := verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", trustedRoot, err)
	}
	stamped, err := verify.NewVerifier(tr, verify.WithObserverTimestamps(1))
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", trustedRoot, err)
	}
	return &keyless{ids: ids, logged: logged, stamped: stamped, tr: tr}, nil
}

// signed returns the keyless signer of the policy whose certificate leaf b was signed
// with, or why none. The subject is not checked here: the caller compares it, to say
// which digest a copied signature names.
func (k *keyless) signed(b *sgbundle.Bundle, leaf *x509.Certificate) (accepted, string) {
	who := certIdentity(leaf)
	if k == nil || len(k.ids) == 0 {
		return accepted{}, fmt.Sprintf("signed by certificate identity %s; the policy has no keyless signer", who)
	}
	opts := make([]verify.PolicyOption, len(k.ids))
	for i, id := range k.ids {
		opts[i] = verify.WithCertificateIdentity(id.id)
	}
	res, err := k.verify(b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), opts...))
	var mismatch *verify.ErrNoMatchingCertificateIdentity
	switch {
	case errors.As(err, &mismatch):
		return accepted{}, fmt.Sprintf("certificate identity %s does not match", who)
	case err != nil:
		return accepted{}, fmt.Sprintf("certificate of %s does not verify against the trusted root: %v", who, err)
	}
	for _, id := range k.ids {
		// The identity sigstore-go matched, found again the way it matched it.
		if id.id.Verify(*res.Signature.Certificate) == nil {
			return accepted{name: who, index: id.index}, ""
		}
	}
	return accepted{}, fmt.Sprintf("certificate identity %s does not match", who)
}

// verify proves b's time with its log entries when it has any, and with its RFC 3161
// timestamps when it has no entries or they cannot be verified (a log the trusted root
// does not know): either is an observer the trusted root vouches for.
func (k *keyless) verify(b *sgbundle.Bundle, pb verify.PolicyBuilder) (*verify.VerificationResult, error) {
	if entries, err := b.TlogEntries(); err == nil && len(entries) > 0 {
		res, err := k.logged.Verify(b, pb)
		if err == nil {
			return res, nil
		}
		if ts, _ := b.Timestamps(); len(ts) == 0 {
			return nil, err
		}
	}
	return k.stamped.Verify(b, pb)
}

// certIdentity names a Fulcio certificate's identity as Evidence.Signer does:
// "<subject> from <issuer>", the subject being the SAN (a URI or an email).
func certIdentity(cert *x509.Certificate) string {
	s, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return fmt.Sprintf("an unreadable certificate (%v)", err)
	}
	return fmt.Sprintf("%s from %s", s.SubjectAlternativeName, s.Issuer)
}
