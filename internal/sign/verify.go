package sign

import (
	"context"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/registry"
)

// Verifier checks signatures offline with a public key: no transparency log, no
// certificate authority, only the registry holding the image and its signatures.
type Verifier struct {
	key signature.Verifier
	reg registry.Client
}

// NewVerifier verifies with the public key key (LoadVerifier loads one), reading images and
// signatures through reg.
func NewVerifier(key signature.Verifier, reg registry.Client) (*Verifier, error) {
	if key == nil {
		return nil, errors.New("verifying: no public key loaded")
	}
	return &Verifier{key: key, reg: reg}, nil
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
		c, err := lookup(ctx, v.reg, v.key, t, f)
		if err != nil {
			return "", fmt.Errorf("verifying %s: %w", t.digest, err)
		}
		if c.ok {
			return f, nil
		}
		stored += c.stored
		if c.other != "" {
			other = c.other
		}
		if c.reason != "" {
			reason = c.reason
		}
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
		e.Detail = fmt.Sprintf("a signature by this key names %s: it was copied from another image; sign this digest with `promoter sign`", other)
	default:
		e.Err = ErrBadSignature
		e.Detail = fmt.Sprintf("%d signature(s) found in %s, none verifies with this public key (%s); check that the key is the public half of the signing key, or re-sign",
			stored, repo, reason)
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
