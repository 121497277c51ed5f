package sign

import (
	"time"

	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/promoter-dev/promoter/internal/registry"
)

// WriteStatement signs an in-toto statement about d with key and pushes it as a bundle
// referrer, as `cosign attest --key` does in the new bundle format: the tests' way to make
// attestations with the same code that makes signatures.
func WriteStatement(ctx context.Context, key signature.SignerVerifier, d name.Digest, predicateType string, predicate map[string]any) error {
	kp, err := newKeypair(key)
	if err != nil {
		return err
	}
	pred, err := structpb.NewStruct(predicate)
	if err != nil {
		return err
	}
	return writeStatement(ctx, registry.Client{}, kp, nil, d, predicateType, pred)
}

// SetKeyRecheck makes Keys look at their source again after d, until the test ends.
func SetKeyRecheck(t interface{ Cleanup(func()) }, d time.Duration) {
	old := keyRecheck
	keyRecheck = d
	t.Cleanup(func() { keyRecheck = old })
}
