package testenv

import (
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
)

// Signer signs with key, in the default format, through the default registry client.
func Signer(t testing.TB, key signature.SignerVerifier) *sign.Signer {
	t.Helper()
	s, err := sign.NewSigner(key, registry.Client{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Verifier verifies with key through the default registry client.
func Verifier(t testing.TB, key signature.Verifier) *sign.Verifier {
	t.Helper()
	v, err := sign.NewVerifier(registry.Client{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
