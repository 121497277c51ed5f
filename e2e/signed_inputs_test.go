package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// ciPassword encrypts the CI key ciSigner generates.
const ciPassword = "ci-pw"

// signedPush writes an arch image (or a BuildKit index) to ref the way a CI job that signs
// its images does: by digest, signed with the CI key, and only then under ref's tag.
type signedPush func(t testing.TB, ref string, v remote.Taggable)

// ciSigner generates the key pair of a CI system that signs the arch images it pushes,
// as ci.key and ci.pub in dir (apart from promoter's own cosign.key and cosign.pub, which
// writeKeyPair writes), and returns the public key's path, for a pipeline's
// verify.signers, and the push that signs before it tags.
//
// The order is what makes the push honest: the daemon merges when a revision's last arch
// tag appears, so an image must carry its signature before its tag exists, or the merge
// would find it unsigned.
func ciSigner(t testing.TB, dir string) (pub string, push signedPush) {
	t.Helper()
	private, public, err := sign.GenerateKeyPair([]byte(ciPassword))
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pub := filepath.Join(dir, "ci.key"), filepath.Join(dir, "ci.pub")
	if err := os.WriteFile(keyPath, private, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, public, 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := sign.LoadSigner(context.Background(), keyPath, []byte(ciPassword), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Promoter's own signer, through the default registry client, which speaks plain HTTP
	// to the loopback test registries.
	signer := testenv.Signer(t, key)
	return pub, func(t testing.TB, ref string, v remote.Taggable) {
		t.Helper()
		pushSigned(t, ref, v, func(byDigest string) {
			if _, err := signer.Sign(context.Background(), byDigest); err != nil {
				t.Fatalf("signing %s with the CI key: %v", byDigest, err)
			}
		})
	}
}

// pushSigned writes v (an image or an index) to ref, a tag, in the order of a CI job that
// signs: by digest, then sign(repo@digest) unless sign is nil, and only then under the
// tag, so the tag never names an image before its signature exists. It returns v's digest.
func pushSigned(t testing.TB, ref string, v remote.Taggable, sign func(byDigest string)) string {
	t.Helper()
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := v.(interface{ Digest() (v1.Hash, error) })
	if !ok {
		t.Fatalf("pushing %s: %T is not an image or an index", ref, v)
	}
	digest := testenv.Digest(t, d)
	byDigest := tag.Context().Name() + "@" + digest
	testenv.Push(t, byDigest, v)
	if sign != nil {
		sign(byDigest)
	}
	if err := remote.Tag(tag, v, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		t.Fatalf("tagging %s as %s: %v", byDigest, ref, err)
	}
	return digest
}

// archRef is repo's default arch tag of rev for platform, as CI pushes it.
func archRef(repo, rev, platform string) string {
	return repo + ":" + types.ArchTag(types.DefaultArchTag).Render(rev, types.MustPlatform(platform))
}
