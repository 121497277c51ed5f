package sign

import (
	"errors"
	"fmt"
)

// Sentinels returned (wrapped in *VerifyError) by Verifier.Verify; test with errors.Is.
var (
	// ErrNoSignature means no signature of either format is stored for the digest.
	ErrNoSignature = errors.New("no signature found")
	// ErrBadSignature means signatures exist but none verifies with the given public key
	// (another key signed it, or the signature or its payload was altered).
	ErrBadSignature = errors.New("signature does not verify with this key")
	// ErrWrongDigest means a signature verifies with the key but its payload names another
	// digest: it was copied from another image.
	ErrWrongDigest = errors.New("signature is for another digest")
)

// VerifyError is the error of a failed verification of one digest. Err is one of the
// sentinels above; Detail says what was found and what to do about it.
type VerifyError struct {
	// Digest is the manifest digest that failed, "sha256:<hex>".
	Digest string
	// Platform is the child's platform ("linux/amd64"), empty for an index or a lone image.
	Platform string
	// Err is ErrNoSignature, ErrBadSignature or ErrWrongDigest.
	Err error
	// Detail explains the failure and names the fix.
	Detail string
}

func (e *VerifyError) Error() string {
	what := e.Digest
	if e.Platform != "" {
		what += " (" + e.Platform + ")"
	}
	if e.Detail == "" {
		return fmt.Sprintf("verifying %s: %v", what, e.Err)
	}
	return fmt.Sprintf("verifying %s: %v: %s", what, e.Err, e.Detail)
}

// Unwrap returns the sentinel, so errors.Is(err, ErrBadSignature) works.
func (e *VerifyError) Unwrap() error { return e.Err }
