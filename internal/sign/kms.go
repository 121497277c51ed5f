package sign

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"

	// The KMS providers cosign's --key takes, registered with kms.Get. Any other NAME://
	// is run as a sigstore-kms-NAME plugin from PATH, as cosign does.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)

// IsKMS says whether a key reference names a KMS key (awskms://, gcpkms://, azurekms://,
// hashivault://, or a plugin's NAME://) rather than a file, env://NAME or
// k8s://namespace/name.
func IsKMS(ref string) bool {
	scheme, _, ok := strings.Cut(ref, "://")
	return ok && scheme != "" && !strings.HasPrefix(ref, envPrefix) && !strings.HasPrefix(ref, kubePrefix)
}

// loadKMS opens a KMS key as cosign does for --key awskms://… (SHA-256 digests). The
// provider reads its credentials the way its cloud SDK does (for AWS: the AWS_*
// environment, a web-identity token, or the instance role). The public key is fetched
// now, so a missing key or missing credentials fail at start, not at the first
// signature.
func loadKMS(ctx context.Context, ref string) (kms.SignerVerifier, error) {
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("opening KMS key %s: %w", ref, err)
	}
	if _, err := sv.PublicKey(sigopts.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("reading the public key of KMS key %s (does the key exist, and may these credentials read it?): %w", ref, err)
	}
	return sv, nil
}

// CreateKMSKey creates the KMS key ref names (an alias or key name that does not exist
// yet) with the provider's default algorithm (ECDSA P-256 for AWS, GCP and Vault), or
// returns the public key of the key already there, PEM-encoded: what
// `cosign generate-key-pair --kms` does.
func CreateKMSKey(ctx context.Context, ref string) ([]byte, error) {
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("opening KMS key %s: %w", ref, err)
	}
	pub, err := sv.CreateKey(ctx, sv.DefaultAlgorithm())
	if err != nil {
		return nil, fmt.Errorf("creating KMS key %s: %w", ref, err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding the public key of %s: %w", ref, err)
	}
	return pem, nil
}
