package sign_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestKMSSignaturesVerifyWithCosign signs with an AWS KMS key (local-kms on loopback,
// reached through sigstore's awskms provider as in production) and checks the signatures
// both ways: promoter's Verifier with the KMS reference and with the exported public
// key, and the real cosign CLI with `--key awskms://…`. Another KMS key is refused by
// both.
func TestKMSSignaturesVerifyWithCosign(t *testing.T) {
	testenv.Tool(t, "cosign")
	kms := testenv.StartKMS(t)
	ref, pubPEM := kms.CreateKey(t, "promoter")
	other, _ := kms.CreateKey(t, "other")
	reg := testenv.StartRegistry(t)
	ctx := context.Background()

	key, err := sign.LoadSigner(ctx, ref, nil, nil)
	if err != nil {
		t.Fatalf("LoadSigner(%s): %v", ref, err)
	}
	for _, f := range []sign.Format{sign.FormatBundle, sign.FormatLegacy} {
		t.Run(string(f), func(t *testing.T) {
			p := pushIndex(t, reg.Host+"/acme/kms-"+string(f))
			s, err := sign.NewSigner(key, registry.Client{}, sign.WithFormat(f))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sign(ctx, p.tag); err != nil {
				t.Fatalf("signing with %s: %v", ref, err)
			}
			dir := t.TempDir()
			pubFile := filepath.Join(dir, "kms.pub")
			if err := os.WriteFile(pubFile, pubPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, vref := range []string{ref, pubFile} {
				v, err := sign.LoadVerifier(ctx, vref, nil)
				if err != nil {
					t.Fatalf("LoadVerifier(%s): %v", vref, err)
				}
				verifier, err := sign.NewVerifier(registry.Client{}, v)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := verifier.Verify(ctx, p.tag); err != nil {
					t.Errorf("verifying with %s: %v", vref, err)
				}
			}
			for _, d := range []string{p.index, p.children["linux/amd64"]} {
				args := []string{"verify", "--key", ref, "--insecure-ignore-tlog", p.at(d)}
				out, err := cosignCmd(t, dir, args...)
				if err != nil {
					t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				t.Logf("cosign %s: passed", strings.Join(args, " "))
			}
			args := []string{"verify", "--key", other, "--insecure-ignore-tlog", p.at(p.index)}
			if out, err := cosignCmd(t, dir, args...); err == nil {
				t.Errorf("cosign %s passed with another KMS key:\n%s", strings.Join(args, " "), out)
			}
			ov, err := sign.LoadVerifier(ctx, other, nil)
			if err != nil {
				t.Fatal(err)
			}
			overifier, err := sign.NewVerifier(registry.Client{}, ov)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := overifier.Verify(ctx, p.tag); err == nil {
				t.Error("another KMS key verifies the signatures")
			}
		})
	}
}

// TestKMSKeyErrorsSayWhatToFix: a KMS key that does not exist fails when it is loaded
// (the daemon's start), naming the key and what to check.
func TestKMSKeyErrorsSayWhatToFix(t *testing.T) {
	kms := testenv.StartKMS(t)
	ref := kms.Ref("absent")
	_, err := sign.LoadSigner(context.Background(), ref, nil, nil)
	if err == nil {
		t.Fatalf("LoadSigner(%s) of a key that does not exist: no error", ref)
	}
	for _, want := range []string{ref, "does the key exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !sign.IsKMS(ref) || sign.IsKMS("env://KEY") || sign.IsKMS("k8s://ns/name") || sign.IsKMS("/keys/cosign.key") {
		t.Error("IsKMS tells KMS references from files, env:// and k8s:// wrongly")
	}
}
