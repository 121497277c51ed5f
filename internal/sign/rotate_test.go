package sign_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestKeyFollowsRotation rotates the key file under an open signer, as the kubelet does
// when a mounted Secret changes: the next digest is signed with the new key, a file that
// no longer loads fails signing with the reason (the old key is not used instead), and
// fixing the file recovers. A public key file opened with OpenVerifier follows its
// rotation the same way.
func TestKeyFollowsRotation(t *testing.T) {
	sign.SetKeyRecheck(t, 0)
	reg := testenv.StartRegistry(t)
	a, b := newKeys(t, "a"), newKeys(t, "b")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cosign.key")
	replaceFile := func(path string, content []byte) {
		// Written aside and renamed into place, as the kubelet's atomic writer does.
		tmp := path + ".new"
		if err := os.WriteFile(tmp, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(content []byte) { replaceFile(path, content) }
	replace(a.privPEM)
	key, err := sign.OpenKey(ctx, path, a.password, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(key, registry.Client{})
	if err != nil {
		t.Fatal(err)
	}
	p1 := pushIndex(t, reg.Host+"/acme/rotate-1")
	if _, err := s.Sign(ctx, p1.tag); err != nil {
		t.Fatal(err)
	}
	replace(b.privPEM)
	p2 := pushIndex(t, reg.Host+"/acme/rotate-2")
	if _, err := s.Sign(ctx, p2.tag); err != nil {
		t.Fatalf("signing after the rotation: %v", err)
	}
	if _, err := verifier(a).Verify(ctx, p1.tag); err != nil {
		t.Errorf("before the rotation, key a: %v", err)
	}
	if _, err := verifier(b).Verify(ctx, p2.tag); err != nil {
		t.Errorf("after the rotation, key b: %v", err)
	}
	var ve *sign.VerifyError
	if _, err := verifier(a).Verify(ctx, p2.tag); !errors.As(err, &ve) {
		t.Errorf("after the rotation, key a still verifies (or fails oddly): %v", err)
	}

	replace([]byte("not a key"))
	p3 := pushIndex(t, reg.Host+"/acme/rotate-3")
	_, err = s.Sign(ctx, p3.tag)
	if !errors.Is(err, sign.ErrNoPEM) || !strings.Contains(err.Error(), path) {
		t.Errorf("signing with a key file that no longer loads: %v, want an error naming %s and why", err, path)
	}
	replace(b.privPEM)
	if _, err := s.Sign(ctx, p3.tag); err != nil {
		t.Fatalf("signing once the file is fixed: %v", err)
	}
	if _, err := verifier(b).Verify(ctx, p3.tag); err != nil {
		t.Errorf("after the fix, key b: %v", err)
	}

	// The public key file of keys.public, mounted from the same Secret, moves with it.
	pubPath := filepath.Join(filepath.Dir(path), "cosign.pub")
	replaceFile(pubPath, a.pubPEM)
	pub, err := sign.OpenVerifier(ctx, pubPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(registry.Client{}, pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, p1.tag); err != nil {
		t.Errorf("public key a, before its rotation: %v", err)
	}
	replaceFile(pubPath, b.pubPEM)
	if _, err := v.Verify(ctx, p2.tag); err != nil {
		t.Errorf("public key b, after its rotation: %v", err)
	}
	if _, err := v.Verify(ctx, p1.tag); !errors.As(err, &ve) {
		t.Errorf("after the public key's rotation, key a's signature still verifies (or fails oddly): %v", err)
	}
}
