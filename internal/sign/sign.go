package sign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
)

// Format is where and how a signature is stored.
type Format string

const (
	// FormatBundle is a sigstore bundle (DSSE envelope of an in-toto statement) pushed as
	// an OCI 1.1 referrer of the signed manifest, with the sha256-<hex> fallback tag on
	// registries without the referrers API: what cosign v3 writes by default.
	FormatBundle Format = "bundle"
	// FormatLegacy is a simple-signing payload in a layer of the image tagged
	// sha256-<hex>.sig: what cosign v1/v2 write, and v3 with --new-bundle-format=false.
	FormatLegacy Format = "legacy"
)

// DefaultFormat is the format Signer uses when none is set; see the package comment for
// why it is this one.
const DefaultFormat = FormatBundle

// ParseFormat checks a format name; "" means DefaultFormat.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "":
		return DefaultFormat, nil
	case FormatBundle, FormatLegacy:
		return f, nil
	default:
		return "", refuse(ErrUnknownFormat, "signature format %q: want %s or %s", s, FormatBundle, FormatLegacy)
	}
}

// Signer signs an image or an index and its platform children, with a static key
// (NewSigner) or keyless (NewKeylessSigner): the same steps, skip rule and formats
// whichever signs.
type Signer struct {
	method  method
	format  Format
	reg     registry.Client
	log     *slog.Logger
	metrics *metrics.Metrics
}

// checker recognises a signer's own signatures of a digest: a public key
// (keyChecker) or a keyless identity (keylessChecker). Verifier checks with them.
type checker interface {
	// lookup says what the stored signatures of format f of t say about this signer.
	lookup(ctx context.Context, reg registry.Client, t target, f Format) (check, error)
	// String names the signer in a refusal ("this public key", "certificate identity ...").
	String() string
}

// method is how a Signer signs: a checker that can also write its signature of a digest.
type method interface {
	checker
	// write signs d in format f and pushes the signature where cosign finds it.
	write(ctx context.Context, reg registry.Client, d name.Digest, f Format) error
}

var (
	_ method  = keyMethod{}
	_ checker = keyChecker{}
	_ method  = (*keylessMethod)(nil)
)

// keyChecker is a public key: it recognises signatures of either format made with its
// private half.
type keyChecker struct{ v signature.Verifier }

func (k keyChecker) lookup(ctx context.Context, reg registry.Client, t target, f Format) (check, error) {
	return lookup(ctx, reg, k.v, t, f)
}

func (keyChecker) String() string { return "this public key" }

// keyMethod signs with a key: a file, env://, k8s:// or a KMS key. A *Key is
// snapshotted per digest, so a rotation takes effect at the next digest and a signature
// and its key hint come from the same key.
type keyMethod struct {
	key signature.SignerVerifier
	w   *witnesses // nil: the signature alone
}

func (k keyMethod) lookup(ctx context.Context, reg registry.Client, t target, f Format) (check, error) {
	sv, err := snapshot(ctx, k.key)
	if err != nil {
		return check{}, err
	}
	return lookup(ctx, reg, sv, t, f)
}

func (keyMethod) String() string { return "this public key" }

func (k keyMethod) write(ctx context.Context, reg registry.Client, d name.Digest, f Format) error {
	sv, err := snapshot(ctx, k.key)
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	if f == FormatLegacy {
		return writeLegacy(ctx, reg, sv, d)
	}
	kp, err := newKeypair(sv)
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	return writeBundle(ctx, reg, kp, k.w, d)
}

// NewSigner signs with key (OpenKey opens one that follows rotations; LoadSigner loads a
// fixed one), reading images and writing signatures through reg.
func NewSigner(key signature.SignerVerifier, reg registry.Client, opts ...Option) (*Signer, error) {
	if key == nil {
		return nil, errors.New("signing: no key loaded")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	// An unsupported key type fails here, not at the first signature.
	if _, err := newKeypair(key); err != nil {
		return nil, err
	}
	m := keyMethod{key: key}
	if o.witnesses.any() {
		if o.format != FormatBundle {
			return nil, refuse(ErrBundleOnly, "timestamps and log entries are carried by sigstore bundles only, not the %s format", o.format)
		}
		if m.w, err = o.witnesses.open(nil); err != nil {
			return nil, err
		}
	}
	return &Signer{method: m, format: o.format, reg: reg, log: o.log, metrics: o.metrics}, nil
}

func newOptions(opts []Option) (options, error) {
	o := options{format: DefaultFormat, log: slog.New(slog.DiscardHandler), metrics: metrics.Discard()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Option changes a Signer.
type Option func(*options) error

type options struct {
	format    Format           // default DefaultFormat
	witnesses Witnesses        // key signers only; default none
	log       *slog.Logger     // default: discard
	metrics   *metrics.Metrics // default metrics.Discard()
}

// WithFormat is where signatures go (config sign.format); "" keeps DefaultFormat.
func WithFormat(f Format) Option {
	return func(o *options) error {
		format, err := ParseFormat(string(f))
		if err != nil {
			return err
		}
		o.format = format
		return nil
	}
}

// WithWitnesses has each key signature stamped by a timestamp authority and/or entered
// in a Rekor v2 log (bundle format only); keyless signers take theirs from Keyless.
func WithWitnesses(w Witnesses) Option {
	return func(o *options) error { o.witnesses = w; return nil }
}

// WithLogger receives one debug line per digest signed; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMetrics counts each Sign by outcome and observes its duration; the default is a
// private registry nobody scrapes.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// Signed reports one signed digest.
type Signed struct {
	// Digest is the signed manifest's digest, "sha256:<hex>".
	Digest string
	// Platform is the child's platform, "" for the index.
	Platform string
	// Skipped means a signature of this format by this signer (key or keyless identity)
	// already verified for the digest, so nothing was written.
	Skipped bool
}

// Sign signs what ref (a tag or a digest) points at: an index and each platform child
// (attestation manifests excluded), or a lone image. A digest that already carries a
// valid signature of the chosen format by this signer is skipped, so signing is idempotent
// and repeated runs do not pile up signatures. The digests are signed concurrently; on a
// failure it returns the error of the first failed digest (in the order above) and what
// was signed before that one.
func (s *Signer) Sign(ctx context.Context, ref string) ([]Signed, error) {
	start := time.Now()
	out, err := s.sign(ctx, ref)
	outcome := "signed"
	if err != nil {
		outcome = "failed"
	}
	s.metrics.SignTotal.WithLabelValues(outcome).Inc()
	s.metrics.SignDuration.Observe(time.Since(start).Seconds())
	return out, err
}

func (s *Signer) sign(ctx context.Context, ref string) ([]Signed, error) {
	format, log := s.format, s.log
	targets, err := resolve(ctx, s.reg, ref)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	// The targets are signed at once: each is a lookup and a write of its own, and nothing
	// of one depends on another (each digest has its own referrers and fallback tag).
	done := make([]Signed, len(targets))
	errs := each(targets, func(i int, t target) (err error) {
		done[i], err = s.signOne(ctx, t)
		return err
	})
	var out []Signed
	for i, d := range done {
		if errs[i] != nil {
			return out, fmt.Errorf("signing %s: %w", ref, errs[i])
		}
		log.DebugContext(ctx, "signed", "digest", d.Digest, "platform", d.Platform,
			"format", string(format), "already_signed", d.Skipped, "repository", targets[i].digest.Context().String())
		out = append(out, d)
	}
	return out, nil
}

// signOne signs t unless a signature of the format by this signer (the key, or the
// keyless identity) already verifies.
func (s *Signer) signOne(ctx context.Context, t target) (Signed, error) {
	c, err := s.method.lookup(ctx, s.reg, t, s.format)
	if err != nil {
		return Signed{}, err
	}
	done := Signed{Digest: t.digest.DigestStr(), Platform: t.platform, Skipped: c.ok}
	if c.ok {
		return done, nil
	}
	return done, s.method.write(ctx, s.reg, t.digest, s.format)
}

// check is what the stored signatures of one format say about one digest.
type check struct {
	stored int    // signatures of this format found
	ok     bool   // one verifies with the key and names the digest
	other  string // digest named by a signature that verifies but is for another manifest
	reason string // why the last rejected signature failed
}

func lookup(ctx context.Context, reg registry.Client, v signature.Verifier, t target, f Format) (check, error) {
	if f == FormatBundle {
		return checkBundles(ctx, reg, v, t)
	}
	return checkLegacy(ctx, reg, v, t)
}
