package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
)

// keypair lets sigstore-go's bundle signer use a loaded signature.SignerVerifier. It is
// cosign's internal/key.SignerVerifierKeypair (not importable): the same hint (base64 of
// the SHA-256 of the PKIX public key) and algorithm details, so bundles come out as
// `cosign sign --key` writes them.
type keypair struct {
	sv     signature.SignerVerifier
	pub    crypto.PublicKey
	hint   []byte
	keyAlg string
	sigAlg signature.AlgorithmDetails
}

var _ sgsign.Keypair = (*keypair)(nil)

func newKeypair(sv signature.SignerVerifier) (*keypair, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("reading public key of the signing key: %w", err)
	}
	sum, err := keyDigest(pub)
	if err != nil {
		return nil, err
	}
	var keyAlg string
	switch pub.(type) {
	case *ecdsa.PublicKey:
		keyAlg = "ECDSA"
	case *rsa.PublicKey:
		keyAlg = "RSA"
	case ed25519.PublicKey:
		keyAlg = "ED25519"
	default:
		return nil, errors.New("unsupported key type: want ECDSA, RSA or ed25519")
	}
	alg, err := signature.GetDefaultAlgorithmDetails(pub, loadOptions()...)
	if err != nil {
		return nil, fmt.Errorf("choosing the signature algorithm: %w", err)
	}
	return &keypair{
		sv:     sv,
		pub:    pub,
		hint:   []byte(base64.StdEncoding.EncodeToString(sum)),
		keyAlg: keyAlg,
		sigAlg: alg,
	}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.sigAlg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.sigAlg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetKeyAlgorithm() string        { return k.keyAlg }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.pub }

func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.pub)
	return string(b), err
}

// SignData signs data, pre-hashing it with the algorithm's hash when it has one (ed25519
// does not), and returns the signature and that digest, as sigstore-go expects.
func (k *keypair) SignData(ctx context.Context, data []byte) ([]byte, []byte, error) {
	opts := []signature.SignOption{sigopts.WithContext(ctx)}
	var digest []byte
	if h := k.sigAlg.GetHashType(); h != 0 {
		hh := h.New()
		hh.Write(data)
		digest = hh.Sum(nil)
		opts = append(opts, sigopts.WithDigest(digest))
	}
	sig, err := k.sv.SignMessage(bytes.NewReader(data), opts...)
	if err != nil {
		return nil, nil, err
	}
	return sig, digest, nil
}
