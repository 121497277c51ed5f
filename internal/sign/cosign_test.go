package sign_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// cosignVerifyArgs is, per format, what the real cosign v3.1.3 CLI needs to verify our
// signatures with a public key and no transparency log. The default format must need
// exactly `cosign verify --key cosign.pub --insecure-ignore-tlog` (see doc.go).
var cosignVerifyArgs = map[sign.Format][]string{
	sign.FormatBundle: {"verify", "--key", "cosign.pub", "--insecure-ignore-tlog"},
	sign.FormatLegacy: {"verify", "--key", "cosign.pub", "--insecure-ignore-tlog"},
}

// cosignClaimType is the claim type `cosign verify` prints for each format: the bundle's
// in-toto predicate type, or the simple-signing type of a .sig payload.
var cosignClaimType = map[sign.Format]string{
	sign.FormatBundle: `"type":"https://sigstore.dev/cosign/sign/v1"`,
	sign.FormatLegacy: `"type":"cosign container image signature"`,
}

func TestCosignVerifiesOurSignatures(t *testing.T) {
	testenv.Tool(t, "cosign")
	reg := testenv.StartRegistry(t)
	k := newKeys(t, "a")
	for _, f := range []sign.Format{"" /* the default */, sign.FormatBundle, sign.FormatLegacy} {
		name := string(f)
		if f == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			p := pushIndex(t, reg.Host+"/acme/cosign-"+name)
			if _, err := signer(k, f).Sign(context.Background(), p.tag); err != nil {
				t.Fatal(err)
			}
			args := cosignVerifyArgs[f]
			if f == "" {
				args = cosignVerifyArgs[sign.DefaultFormat]
				if want := "verify --key cosign.pub --insecure-ignore-tlog"; strings.Join(args, " ") != want {
					t.Fatalf("default format %s needs `cosign %s`, want exactly `cosign %s`", sign.DefaultFormat, strings.Join(args, " "), want)
				}
			}
			for _, d := range []string{p.index, p.children["linux/arm64"]} {
				out, err := cosignCmd(t, k.dir, append(args, p.at(d))...)
				if err != nil {
					t.Fatalf("cosign %s %s: %v\n%s", strings.Join(args, " "), p.at(d), err, out)
				}
				if !strings.Contains(out, d) {
					t.Errorf("cosign verify output does not name %s:\n%s", d, out)
				}
				t.Logf("cosign %s %s:\n%s", strings.Join(args, " "), p.at(d), out)
				// cosign prints the claim it verified; its type tells which format it read.
				wantType := cosignClaimType[f]
				if f == "" {
					wantType = cosignClaimType[sign.DefaultFormat]
				}
				if !strings.Contains(out, wantType) {
					t.Errorf("cosign verify did not read the %s signature (no %q in its output):\n%s", f, wantType, out)
				}
			}
			// And cosign rejects the same digests with another key.
			other := newKeys(t, "b")
			out, err := cosignCmd(t, other.dir, append(args, p.at(p.index))...)
			if err == nil {
				t.Errorf("cosign verify with another key succeeded:\n%s", out)
			}
		})
	}
}

// TestCosignCLIKeysLoad: a key pair from the real `cosign generate-key-pair` loads, signs
// and verifies.
func TestCosignCLIKeysLoad(t *testing.T) {
	testenv.Tool(t, "cosign")
	reg := testenv.StartRegistry(t)
	dir := t.TempDir()
	if out, err := cosignCmd(t, dir, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	ctx := context.Background()
	sv, err := sign.LoadSigner(ctx, filepath.Join(dir, "cosign.key"), []byte("correct horse"), nil)
	if err != nil {
		t.Fatalf("LoadSigner(cosign generate-key-pair key): %v", err)
	}
	v, err := sign.LoadVerifier(ctx, filepath.Join(dir, "cosign.pub"), nil)
	if err != nil {
		t.Fatalf("LoadVerifier(cosign generate-key-pair key): %v", err)
	}
	if _, err := sign.LoadSigner(ctx, filepath.Join(dir, "cosign.key"), []byte("wrong"), nil); err == nil ||
		!strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Errorf("LoadSigner with a wrong password: got %v, want an error naming COSIGN_PASSWORD", err)
	}
	p := pushIndex(t, reg.Host+"/acme/cosign-keys")
	if _, err := testenv.Signer(t, sv).Sign(ctx, p.tag); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.Verifier(t, v).Verify(ctx, p.tag); err != nil {
		t.Fatalf("Verify with the cosign-generated public key: %v", err)
	}
}

// TestCosignSignsWithOurKeys: the real `cosign sign` accepts a GenerateKeyPair key, and
// what it writes (both formats) passes our Verifier and cosign's own verify.
func TestCosignSignsWithOurKeys(t *testing.T) {
	testenv.Tool(t, "cosign")
	reg := testenv.StartRegistry(t)
	k := newKeys(t, "a")
	tests := []struct {
		format sign.Format
		flags  []string
	}{
		{sign.FormatBundle, nil},
		{sign.FormatLegacy, []string{"--new-bundle-format=false"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			p := pushIndex(t, reg.Host+"/acme/cosign-signs-"+string(tt.format))
			d := p.children["linux/amd64"]
			args := append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false"}, tt.flags...)
			args = append(args, p.at(d))
			if out, err := cosignCmd(t, k.dir, args...); err != nil {
				t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			got, err := verifier(k).Verify(context.Background(), p.at(d))
			if err != nil {
				t.Fatalf("Verify of what cosign signed: %v", err)
			}
			if len(got) != 1 || got[0].Format != tt.format {
				t.Errorf("Verify = %+v, want one %s signature", got, tt.format)
			}
			// Our Signer sees cosign's signature by the same key and adds none.
			res, err := signer(k, tt.format).Sign(context.Background(), p.at(d))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || !res[0].Skipped {
				t.Errorf("Sign after cosign signed = %+v, want skipped", res)
			}
			if out, err := cosignCmd(t, k.dir, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", p.at(d)); err != nil {
				t.Fatalf("cosign verify: %v\n%s", err, out)
			}
		})
	}
}

// TestCosignIgnoresLegacyOnceABundleExists records why the default is the bundle format:
// when a digest has any bundle referrer, cosign v3 verify reads only bundles, so a valid
// .sig signature by key A stops verifying in cosign as soon as key B adds a bundle. Our
// Verifier still accepts it.
func TestCosignIgnoresLegacyOnceABundleExists(t *testing.T) {
	testenv.Tool(t, "cosign")
	reg := testenv.StartRegistry(t)
	a, b := newKeys(t, "a"), newKeys(t, "b")
	p := pushIndex(t, reg.Host+"/acme/mixed")
	d := p.at(p.children["linux/amd64"])
	mustSign(t, a, sign.FormatLegacy, d)
	if out, err := cosignCmd(t, a.dir, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", d); err != nil {
		t.Fatalf("cosign verify of a legacy signature: %v\n%s", err, out)
	}
	mustSign(t, b, sign.FormatBundle, d)
	if out, err := cosignCmd(t, a.dir, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", d); err == nil {
		t.Errorf("cosign verify with key A still passes after key B added a bundle; the package comment's reasoning is stale:\n%s", out)
	}
	got, err := verifier(a).Verify(context.Background(), d)
	if err != nil {
		t.Fatalf("Verify with key A: %v", err)
	}
	if got[0].Format != sign.FormatLegacy {
		t.Errorf("Verify with key A: format %s, want legacy", got[0].Format)
	}
}
