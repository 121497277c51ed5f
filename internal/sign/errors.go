package sign

import (
	"errors"
	"fmt"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
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

// ErrUntrusted is wrapped by every *UntrustedError: Policy.Verify found no evidence that
// a signer of the policy vouches for the image. It is a verdict, not a failure to reach
// the registry, so retrying does not change it (errors from the registry are returned
// as they are and do not wrap it). It is types.ErrUntrusted itself, the sentinel the
// merger and the dispatcher test for, so there is one to match whichever is imported.
var ErrUntrusted = types.ErrUntrusted

// UntrustedError is the verdict of a Policy on an image that no accepted signer vouches
// for.
type UntrustedError struct {
	// Image is the repository, "host/path".
	Image string
	// Digest is the image manifest's digest, "sha256:<hex>".
	Digest string
	// Expected names the policy's signers (types.TrustedSigner.String), any one of which
	// would have been accepted.
	Expected []string
	// Found says what the registry holds instead: no signature, signatures by others and
	// why each was refused, or the required attestation missing or not matching.
	Found string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("%s@%s is not trusted: want a signature by %s; found %s",
		e.Image, e.Digest, strings.Join(e.Expected, " or "), e.Found)
}

// Unwrap returns ErrUntrusted.
func (e *UntrustedError) Unwrap() error { return ErrUntrusted }

// Sentinels of refused inputs: a configuration or an argument that cannot work, refused
// before anything is signed or read from a registry. The error's text says what was
// given and what to give instead; test with errors.Is.
var (
	// ErrUnknownFormat: ParseFormat got a name that is no Format.
	ErrUnknownFormat = errors.New("unknown signature format")
	// ErrUnknownPredicateType: PredicateType got neither a URI nor one of cosign's names.
	ErrUnknownPredicateType = errors.New("unknown predicate type")
	// ErrBundleOnly: what was asked for (keyless signing, timestamps, log entries) is
	// carried by sigstore bundles only, and another format was chosen.
	ErrBundleOnly = errors.New("sigstore bundles only")
	// ErrNoTrustedRoot: a timestamp authority or transparency log without a trusted root
	// to check what it returns.
	ErrNoTrustedRoot = errors.New("no trusted root")
	// ErrKeylessConfig: keyless signing lacks a setting.
	ErrKeylessConfig = errors.New("incomplete keyless signing configuration")
	// ErrBadURL: a Fulcio, timestamp authority or log URL that is no http(s) URL.
	ErrBadURL = errors.New("not an http(s) URL")
	// ErrUnsupportedToken: an identity token that names no identity promoter signs as
	// (not a JWT, no issuer, an unverified email, a token of another kind).
	ErrUnsupportedToken = errors.New("unsupported identity token")
	// ErrKeyRef: a key reference that names no key: empty, a malformed k8s:// reference,
	// or an env:// variable that is not set.
	ErrKeyRef = errors.New("invalid key reference")
	// ErrNoKubeClient: a k8s:// key reference with no Kubernetes client to read it.
	ErrNoKubeClient = errors.New("no Kubernetes client")
	// ErrTrustedRoot: a trusted root that cannot be read or is no sigstore
	// trusted_root.json (errors.Is also matches the cause, e.g. fs.ErrNotExist).
	ErrTrustedRoot = errors.New("unreadable trusted root")
	// ErrNoPEM: a key that holds no PEM block.
	ErrNoPEM = errors.New("no PEM block found")
)

// refusal is an error that reads as its own message, which names what to fix, and that
// errors.Is matches to one of the sentinels above and to what the message wraps (%w).
// It keeps the messages as they were before the sentinels, word for word, instead of
// prefixing the sentinel's text.
type refusal struct {
	sentinel error
	err      error // the message, and what it wraps
}

func (e *refusal) Error() string   { return e.err.Error() }
func (e *refusal) Unwrap() []error { return []error{e.sentinel, e.err} }

// refuse returns a *refusal of sentinel; format and args are fmt.Errorf's.
func refuse(sentinel error, format string, args ...any) error {
	return &refusal{sentinel: sentinel, err: fmt.Errorf(format, args...)}
}
