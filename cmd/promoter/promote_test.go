package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// pushIndex pushes a random 2-platform index as ref.
func pushIndex(t *testing.T, ref string) string {
	t.Helper()
	idx, err := random.Index(1024, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := registry.Client{}.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, registry.Client{}.Remote(context.Background())...); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestPromoteCmdRequireSignature(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	src := a.Host + "/web:rev1"
	digest := pushIndex(t, src)
	dir := t.TempDir()
	priv, pub, err := sign.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	privFile, pubFile := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	for f, b := range map[string][]byte{privFile: priv, pubFile: pub} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Unsigned: refused before anything is copied.
	_, _, err = runCLI(t, "promote", "--require-signature", "--key", pubFile, src, b.Host+"/prod/web")
	if !errors.Is(err, promote.ErrNotSigned) {
		t.Fatalf("unsigned source: got %v, want ErrNotSigned", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(b.Dir, "docker", "registry", "v2", "blobs")); len(entries) != 0 {
		t.Errorf("refused promotion left blobs in the destination")
	}

	key, err := sign.LoadSigner(context.Background(), privFile, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.Signer(t, key).Sign(context.Background(), src); err != nil {
		t.Fatalf("signing: %v", err)
	}
	stdout, stderr, err := runCLI(t, "promote", "--require-signature", "--key", pubFile, "--jobs", "4", src, b.Host+"/prod/web")
	if err != nil {
		t.Fatalf("signed source: %v\n%s", err, stderr)
	}
	// Not a terminal: one line per artifact copied, then a summary.
	if !strings.Contains(stdout, "copy\tblob\t") || !strings.Contains(stdout, "tag\tindex\t"+b.Host+"/prod/web:rev1") {
		t.Errorf("output lacks per-artifact lines:\n%s", stdout)
	}
	if !strings.Contains(stderr, b.Host+"/prod/web:rev1 "+digest) {
		t.Errorf("summary lacks destination and digest:\n%s", stderr)
	}
	// The signatures came along: the destination verifies on its own.
	verifyKey, err := sign.LoadVerifier(context.Background(), pubFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.Verifier(t, verifyKey).Verify(context.Background(), b.Host+"/prod/web:rev1"); err != nil {
		t.Errorf("destination does not verify: %v", err)
	}
}

func TestCopyAliasDryRun(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	src := a.Host + "/web:rev1"
	pushIndex(t, src)
	stdout, _, err := runCLI(t, "copy", "--dry-run", src, b.Host+"/prod/web:stable", a.Host+"/prod/web")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# " + b.Host + "/prod/web:stable", "# " + a.Host + "/prod/web:rev1", "copy  blob", "mount  blob", "tag   index"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, stdout)
		}
	}
	r, _ := registry.Client{}.ParseReference(b.Host + "/prod/web:stable")
	if _, err := remote.Head(r, registry.Client{}.Remote(context.Background())...); err == nil {
		t.Errorf("dry run wrote %s", r)
	}
}

func TestPlanWritesNothing(t *testing.T) {
	a, b := testenv.StartRegistry(t), testenv.StartRegistry(t)
	src := a.Host + "/web:rev2"
	pushIndex(t, src)
	stdout, _, err := runCLI(t, "plan", src, b.Host+"/prod/web")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "# "+b.Host+"/prod/web:rev2") || !strings.Contains(stdout, "copy  blob") {
		t.Errorf("plan output:\n%s", stdout)
	}
	r, _ := registry.Client{}.ParseReference(b.Host + "/prod/web:rev2")
	if _, err := remote.Head(r, registry.Client{}.Remote(context.Background())...); err == nil {
		t.Errorf("plan wrote %s", r)
	}
}
