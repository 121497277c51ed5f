package sign

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Key references and the data keys of a Kubernetes key secret, as cosign names them
// (`cosign generate-key-pair k8s://ns/name` writes exactly these; cosign's
// pkg/cosign/kubernetes.KeyReference is kubePrefix).
const (
	kubePrefix      = "k8s://"
	envPrefix       = "env://"
	secretKey       = "cosign.key"
	secretPassword  = "cosign.password"
	secretPublicKey = "cosign.pub"
)

// LoadSigner loads a private key. ref is one of:
//   - a file holding a cosign-encrypted key (what `cosign generate-key-pair` writes,
//     decrypted with password) or an unencrypted PEM key (PKCS#8, EC or RSA);
//   - env://NAME, the same contents in an environment variable;
//   - k8s://namespace/name, a Secret with cosign.key and cosign.password; the secret's
//     password wins over the password argument, which is used when the secret has none;
//   - a KMS key: awskms://[ENDPOINT]/alias/NAME (or a key id or ARN), gcpkms://…,
//     azurekms://…, hashivault://NAME, or NAME://… for a sigstore-kms-NAME plugin, as
//     cosign's --key takes them (password is not used).
//
// kube is only needed for k8s:// references.
func LoadSigner(ctx context.Context, ref string, password []byte, kube kubernetes.Interface) (signature.SignerVerifier, error) {
	if IsKMS(ref) {
		return loadKMS(ctx, ref)
	}
	raw, password, err := readPrivateKey(ctx, ref, password, kube)
	if err != nil {
		return nil, err
	}
	return parsePrivateKey(ref, raw, password)
}

// readPrivateKey reads the private key ref names (a file, env://NAME or
// k8s://namespace/name) and the password it is encrypted with: a Secret's
// cosign.password, when it has one, else password.
func readPrivateKey(ctx context.Context, ref string, password []byte, kube kubernetes.Interface) (raw, pw []byte, err error) {
	if !strings.HasPrefix(ref, kubePrefix) {
		raw, err := readKeyRef(ref)
		return raw, password, err
	}
	data, err := readKeySecret(ctx, ref, kube, secretKey)
	if err != nil {
		return nil, nil, err
	}
	if p, ok := data[secretPassword]; ok {
		password = p
	}
	return data[secretKey], password, nil
}

func parsePrivateKey(ref string, raw, password []byte) (signature.SignerVerifier, error) {
	sv, err := privateKey(raw, password)
	if err != nil {
		if strings.HasPrefix(ref, kubePrefix) {
			return nil, fmt.Errorf("loading private key %s from key %s: %w", ref, secretKey, err)
		}
		return nil, fmt.Errorf("loading private key %s: %w", ref, err)
	}
	return sv, nil
}

// LoadVerifier loads a public key: a PEM file (cosign.pub), env://NAME,
// k8s://namespace/name (the secret's cosign.pub), or a KMS key as LoadSigner takes it
// (its public half, read from the KMS). kube is only needed for k8s://.
func LoadVerifier(ctx context.Context, ref string, kube kubernetes.Interface) (signature.Verifier, error) {
	if IsKMS(ref) {
		sv, err := loadKMS(ctx, ref)
		if err != nil {
			return nil, err
		}
		// Verify locally with the public key: signatures are checked often (the skip
		// rule, requireSignature), and a remote Verify call per check would cost a KMS
		// request each.
		pub, err := sv.PublicKey(sigopts.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading the public key of KMS key %s: %w", ref, err)
		}
		return signature.LoadDefaultVerifier(pub, loadOptions()...)
	}
	raw, err := readPublicKey(ctx, ref, kube)
	if err != nil {
		return nil, err
	}
	return parsePublicKey(ref, raw)
}

func parsePublicKey(ref string, raw []byte) (signature.Verifier, error) {
	v, err := publicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("loading public key %s: %w", ref, err)
	}
	return v, nil
}

// readPublicKey reads the public key ref names: a file, env://NAME, or the cosign.pub of
// a k8s://namespace/name Secret.
func readPublicKey(ctx context.Context, ref string, kube kubernetes.Interface) ([]byte, error) {
	if !strings.HasPrefix(ref, kubePrefix) {
		return readKeyRef(ref)
	}
	data, err := readKeySecret(ctx, ref, kube, secretPublicKey)
	if err != nil {
		return nil, err
	}
	return data[secretPublicKey], nil
}

// The PEM types of cosign's encrypted private keys (cosign's pkg/cosign
// SigstorePrivateKeyPemType, what it writes, and CosignPrivateKeyPemType, what older
// versions wrote). The body is the PKCS#8 key encrypted with go-securesystemslib's
// encrypted package (scrypt and NaCl secretbox), the library cosign uses for it.
const (
	sigstorePrivateKeyPEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
	cosignPrivateKeyPEM   = "ENCRYPTED COSIGN PRIVATE KEY"
)

// loadOptions are cosign's default key load options (pkg/cosign.GetDefaultLoadOptions):
// ED25519ph for ed25519 keys, so signatures match what cosign makes.
func loadOptions() []signature.LoadOption {
	return []signature.LoadOption{sigopts.WithED25519ph()}
}

// GenerateKeyPair returns a new ECDSA P-256 key pair in cosign's formats: the private key
// PEM-encoded and encrypted with password ("ENCRYPTED SIGSTORE PRIVATE KEY", as
// `cosign generate-key-pair` writes it) and the public key as PKIX PEM. An empty password
// is allowed, as in cosign, but leaves the key protected by nothing.
func GenerateKeyPair(password []byte) (private, public []byte, err error) {
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key pair: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key pair: encoding the private key: %w", err)
	}
	enc, err := encrypted.Encrypt(der, password)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key pair: encrypting the private key: %w", err)
	}
	public, err = cryptoutils.MarshalPublicKeyToPEM(pk.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("generating key pair: encoding the public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: sigstorePrivateKeyPEM, Bytes: enc}), public, nil
}

// privateKey decodes a cosign-encrypted or a plain PEM private key. Both get cosign's
// default load options (ED25519ph for ed25519), so signatures match what cosign makes.
func privateKey(raw, password []byte) (signature.SignerVerifier, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, refuse(ErrNoPEM, "no PEM block found: want a cosign key (cosign generate-key-pair, promoter keygen) or a PEM private key")
	}
	switch block.Type {
	case sigstorePrivateKeyPEM, cosignPrivateKeyPEM:
		sv, err := decryptPrivateKey(block.Bytes, password)
		if err != nil {
			return nil, fmt.Errorf("%w (wrong password? set COSIGN_PASSWORD or the configured key password)", err)
		}
		return sv, nil
	default:
		pk, err := cryptoutils.UnmarshalPEMToPrivateKey(raw, cryptoutils.SkipPassword)
		if err != nil {
			return nil, fmt.Errorf("parsing PEM private key of type %q: %w", block.Type, err)
		}
		return signature.LoadDefaultSignerVerifier(pk, loadOptions()...)
	}
}

// decryptPrivateKey is cosign's pkg/cosign.LoadPrivateKey after the PEM decoding: the
// same steps and error texts.
func decryptPrivateKey(enc, password []byte) (signature.SignerVerifier, error) {
	der, err := encrypted.Decrypt(enc, password)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	return signature.LoadDefaultSignerVerifier(pk, loadOptions()...)
}

func publicKey(raw []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing PEM public key (want the cosign.pub of the signing key): %w", err)
	}
	return signature.LoadDefaultVerifier(pub, loadOptions()...)
}

// readKeyRef reads a key from a file or an env://NAME variable.
func readKeyRef(ref string) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, envPrefix); ok {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, refuse(ErrKeyRef, "key %s: environment variable %s is not set", ref, name)
		}
		return []byte(v), nil
	}
	if ref == "" {
		return nil, refuse(ErrKeyRef, "no key given: want a key file, env://NAME or k8s://namespace/name")
	}
	raw, err := os.ReadFile(ref)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	return raw, nil
}

// readKeySecret reads the Secret named by k8s://namespace/name and checks it has want.
func readKeySecret(ctx context.Context, ref string, kube kubernetes.Interface, want string) (map[string][]byte, error) {
	ns, name, ok := strings.Cut(strings.TrimPrefix(ref, kubePrefix), "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, refuse(ErrKeyRef, "key %q: want k8s://namespace/name", ref)
	}
	if kube == nil {
		return nil, refuse(ErrNoKubeClient, "key %s: no Kubernetes client configured (set KUBECONFIG or run in a cluster)", ref)
	}
	s, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading key secret %s: %w", ref, err)
	}
	if len(s.Data[want]) == 0 {
		return nil, fmt.Errorf("key secret %s has no %q entry (cosign generate-key-pair k8s://%s/%s writes one)", ref, want, ns, name)
	}
	return s.Data, nil
}
