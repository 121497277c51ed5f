package sign

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/registry"
)

// Verifier checks signatures offline with public keys: no transparency log, no
// certificate authority, only the registry holding the image and its signatures.
type Verifier struct {
	keys []signature.Verifier
	reg  registry.Client
}

// NewVerifier verifies with the public keys keys (LoadVerifier loads one), reading images
// and signatures through reg. A digest verifies when any one of the keys signed it, so
// during a key rotation both the old and the new public key are listed.
func NewVerifier(reg registry.Client, keys ...signature.Verifier) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("verifying: no public key loaded")
	}
	for i, k := range keys {
		if k == nil {
			return nil, fmt.Errorf("verifying: public key %d is not loaded", i+1)
		}
	}
	return &Verifier{keys: keys, reg: reg}, nil
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
		// The signatures stored are the same whichever key checks them: count them once.
		inFormat := 0
		for _, key := range v.keys {
			c, err := lookup(ctx, v.reg, key, t, f)
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
	keys := "this public key"
	if len(v.keys) > 1 {
		keys = fmt.Sprintf("any of these %d public keys", len(v.keys))
	}
	e := &VerifyError{Digest: t.digest.DigestStr(), Platform: t.platform}
	repo := t.digest.Context().String()
	switch {
	case stored == 0:
		e.Err = ErrNoSignature
		e.Detail = fmt.Sprintf("%s holds neither a sigstore bundle referrer nor a %s tag for it; sign it with `promoter sign --key KEY %s`",
			repo, sigTagName(t), t.digest)
	case other != "":
		e.Err = ErrWrongDigest
		e.Detail = fmt.Sprintf("a signature by %s names %s: it was copied from another image; sign this digest with `promoter sign`", strings.TrimPrefix(keys, "any of "), other)
	default:
		e.Err = ErrBadSignature
		e.Detail = fmt.Sprintf("%d signature(s) found in %s, none verifies with %s (%s); check that the key is the public half of the signing key, or re-sign",
			stored, repo, keys, reason)
	}
	return "", e
}

func sigTagName(t target) string {
	d := t.digest.DigestStr()
	if len(d) > 7 && d[:7] == "sha256:" {
		return "sha256-" + d[7:] + ".sig"
	}
	return "<alg>-<hex>.sig"
}
