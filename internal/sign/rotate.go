package sign

import (
	"bytes"
	"context"
	"crypto"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"k8s.io/client-go/kubernetes"
)

// keyRecheck is how often a Key or PublicKey looks at its file or Secret again:
// rotations are seen within this long, and a Secret is not read from the API for every
// signature checked.
var keyRecheck = 5 * time.Second

// watched is a key that follows its source: a key file or a Kubernetes Secret that a
// platform team rotates (a mounted Secret is replaced by the kubelet; a k8s:// Secret is
// updated in place) is read again at most every keyRecheck, and once its bytes change
// the new key is used. A source that changes into something that does not load is an
// error until it is fixed: a rotated-away key may be a leaked one, so the old key is not
// used in its place. A source that cannot be read for a moment (the API server is away)
// keeps the key it last held.
type watched[T any] struct {
	read  func(ctx context.Context) ([]byte, error)
	parse func(raw []byte) (T, error)

	mu      sync.Mutex
	raw     []byte // the source's bytes when last read
	cur     T      // parsed from raw, when err is nil
	err     error  // why raw does not load
	checked time.Time
}

// open reads and parses the source once: a key that does not load fails now.
func (w *watched[T]) open(ctx context.Context) error {
	raw, err := w.read(ctx)
	if err != nil {
		return err
	}
	w.raw, w.checked = raw, time.Now()
	w.cur, err = w.parse(raw)
	return err
}

// current is the key as its source holds it now.
func (w *watched[T]) current(ctx context.Context) (T, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.checked) < keyRecheck {
		return w.cur, w.err
	}
	w.checked = time.Now()
	raw, err := w.read(ctx)
	if err != nil || bytes.Equal(raw, w.raw) {
		return w.cur, w.err
	}
	w.raw = raw
	w.cur, w.err = w.parse(raw)
	return w.cur, w.err
}

// watches says whether ref's source can change under a running process: a file or a
// k8s:// Secret. An environment does not change, and a KMS rotates its keys itself.
func watches(ref string) bool {
	return !IsKMS(ref) && !strings.HasPrefix(ref, envPrefix)
}

// Key is a signing key from a file or a k8s:// Secret that follows rotations (see
// watched). It is a signature.SignerVerifier; Signer takes one snapshot of it per
// digest, so a signature and its public key hint always come from the same key.
type Key struct {
	w *watched[signature.SignerVerifier]
}

var _ signature.SignerVerifier = (*Key)(nil)

// OpenKey loads a signing key as LoadSigner does, and fails the same way now (a daemon
// must not start with a key it cannot use). A key from a file or a k8s:// Secret is
// returned as a *Key that follows rotations; env:// and KMS keys are returned as loaded.
func OpenKey(ctx context.Context, ref string, password []byte, kube kubernetes.Interface) (signature.SignerVerifier, error) {
	if !watches(ref) {
		return LoadSigner(ctx, ref, password, kube)
	}
	var pw []byte // the password of the bytes read last, which parse uses
	w := &watched[signature.SignerVerifier]{
		read: func(ctx context.Context) (raw []byte, err error) {
			raw, pw, err = readPrivateKey(ctx, ref, password, kube)
			return raw, err
		},
		parse: func(raw []byte) (signature.SignerVerifier, error) { return parsePrivateKey(ref, raw, pw) },
	}
	if err := w.open(ctx); err != nil {
		return nil, err
	}
	return &Key{w: w}, nil
}

func (k *Key) current(ctx context.Context) (signature.SignerVerifier, error) { return k.w.current(ctx) }

func (k *Key) SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error) {
	sv, err := k.current(rpcContext(opts))
	if err != nil {
		return nil, err
	}
	return sv.SignMessage(message, opts...)
}

func (k *Key) PublicKey(opts ...signature.PublicKeyOption) (crypto.PublicKey, error) {
	sv, err := k.current(rpcContext(opts))
	if err != nil {
		return nil, err
	}
	return sv.PublicKey(opts...)
}

func (k *Key) VerifySignature(sig, message io.Reader, opts ...signature.VerifyOption) error {
	sv, err := k.current(rpcContext(opts))
	if err != nil {
		return err
	}
	return sv.VerifySignature(sig, message, opts...)
}

// PublicKey is a public key from a file or a k8s:// Secret that follows rotations (see
// watched): keys.public, mounted from the same Secret as the signing key, moves with it.
type PublicKey struct{ w *watched[signature.Verifier] }

var _ signature.Verifier = (*PublicKey)(nil)

// OpenVerifier loads a public key as LoadVerifier does, failing now as it does; one from
// a file or a k8s:// Secret is returned as a *PublicKey that follows rotations.
func OpenVerifier(ctx context.Context, ref string, kube kubernetes.Interface) (signature.Verifier, error) {
	if !watches(ref) {
		return LoadVerifier(ctx, ref, kube)
	}
	w := &watched[signature.Verifier]{
		read:  func(ctx context.Context) ([]byte, error) { return readPublicKey(ctx, ref, kube) },
		parse: func(raw []byte) (signature.Verifier, error) { return parsePublicKey(ref, raw) },
	}
	if err := w.open(ctx); err != nil {
		return nil, err
	}
	return &PublicKey{w: w}, nil
}

func (p *PublicKey) PublicKey(opts ...signature.PublicKeyOption) (crypto.PublicKey, error) {
	v, err := p.w.current(rpcContext(opts))
	if err != nil {
		return nil, err
	}
	return v.PublicKey(opts...)
}

func (p *PublicKey) VerifySignature(sig, message io.Reader, opts ...signature.VerifyOption) error {
	v, err := p.w.current(rpcContext(opts))
	if err != nil {
		return err
	}
	return v.VerifySignature(sig, message, opts...)
}

// snapshot is the key for one signature: a Key's current key, or sv itself.
func snapshot(ctx context.Context, sv signature.SignerVerifier) (signature.SignerVerifier, error) {
	if k, ok := sv.(*Key); ok {
		return k.current(ctx)
	}
	return sv, nil
}

// rpcContext is the context an option list carries (options.WithContext), or Background.
func rpcContext[T interface{ ApplyContext(*context.Context) }](opts []T) context.Context {
	ctx := context.Background()
	for _, o := range opts {
		o.ApplyContext(&ctx)
	}
	return ctx
}
