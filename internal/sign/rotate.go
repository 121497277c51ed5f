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

// keyRecheck is how often a Key looks at its file or Secret again: rotations are seen
// within this long, and a Secret is not read from the API for every signature checked.
var keyRecheck = 5 * time.Second

// Key is a signing key that follows its source: a key file or a Kubernetes Secret that a
// platform team rotates (a mounted Secret is replaced by the kubelet; a k8s:// Secret is
// updated in place) is read again at most every keyRecheck, and once its bytes change
// every signature is made, and checked, with the new key. A source that changes into
// something that does not load is an error for each signature until it is fixed: a
// rotated-away key may be a leaked one, so the old key is not used in its place.
//
// Key is a signature.SignerVerifier; Signer takes one snapshot of it per digest, so a
// signature and its public key hint always come from the same key.
type Key struct {
	ref      string
	password []byte
	kube     kubernetes.Interface

	mu      sync.Mutex
	raw     []byte                   // the source's bytes when last read
	sv      signature.SignerVerifier // parsed from raw, when err is nil
	checked time.Time
	err     error // why raw does not load
}

var _ signature.SignerVerifier = (*Key)(nil)

// OpenKey loads a signing key as LoadSigner does, and fails the same way now (a daemon
// must not start with a key it cannot use). A key from a file or a k8s:// Secret is
// returned as a *Key that follows rotations; env:// and KMS keys are returned as loaded
// (an environment does not change under a process, and a KMS rotates its keys itself).
func OpenKey(ctx context.Context, ref string, password []byte, kube kubernetes.Interface) (signature.SignerVerifier, error) {
	sv, err := LoadSigner(ctx, ref, password, kube)
	if err != nil || IsKMS(ref) || strings.HasPrefix(ref, envPrefix) {
		return sv, err
	}
	raw, _, err := readPrivateKey(ctx, ref, password, kube)
	if err != nil {
		return nil, err
	}
	return &Key{ref: ref, password: password, kube: kube, raw: raw, sv: sv, checked: time.Now()}, nil
}

// current is the key as its source holds it now (read again when keyRecheck has passed).
func (k *Key) current(ctx context.Context) (signature.SignerVerifier, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < keyRecheck {
		return k.sv, k.err
	}
	k.checked = time.Now()
	raw, password, err := readPrivateKey(ctx, k.ref, k.password, k.kube)
	if err != nil {
		// An unreadable source (the API server is away, a file is being replaced) keeps
		// the key it last held; the next check reads it again.
		return k.sv, k.err
	}
	if bytes.Equal(raw, k.raw) {
		return k.sv, k.err
	}
	k.raw = raw
	k.sv, k.err = parsePrivateKey(k.ref, raw, password)
	return k.sv, k.err
}

// snapshot is the key for one signature: current, or the Key itself when sv is a fixed
// key.
func snapshot(ctx context.Context, sv signature.SignerVerifier) (signature.SignerVerifier, error) {
	if k, ok := sv.(*Key); ok {
		return k.current(ctx)
	}
	return sv, nil
}

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

// rpcContext is the context an option list carries (options.WithContext), or Background.
func rpcContext[T interface{ ApplyContext(*context.Context) }](opts []T) context.Context {
	ctx := context.Background()
	for _, o := range opts {
		o.ApplyContext(&ctx)
	}
	return ctx
}
