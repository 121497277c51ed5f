package sign_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/faultproxy"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// archImage is one platform image as CI pushes it to a merge-only pipeline's arch tag.
type archImage struct {
	repo   string      // host/path
	digest string      // sha256:...
	ref    name.Digest // repo@digest
}

func (a archImage) String() string { return a.ref.String() }

// pushArch pushes a fresh linux/amd64 image to repo (host/path) under tag "amd64".
func pushArch(t *testing.T, repo string) archImage {
	t.Helper()
	img := platformImage(t, v1.Platform{OS: "linux", Architecture: "amd64"})
	tag, err := name.NewTag(repo + ":amd64")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("pushing %s: %v", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return archImage{repo: repo, digest: d.String(), ref: digestRef(t, repo, d.String())}
}

// keyPolicy trusts the public keys ks.
func keyPolicy(ks ...keys) types.VerifyPolicy {
	var p types.VerifyPolicy
	for _, k := range ks {
		p.Signers = append(p.Signers, types.TrustedSigner{Key: k.pub})
	}
	return p
}

func newPolicy(t *testing.T, p types.VerifyPolicy) *sign.Policy {
	t.Helper()
	pol, err := sign.NewPolicy(context.Background(), p, registry.Client{}, nil)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	return pol
}

// fingerprint computes what the policy names k by, independently of the package: ssh's
// SHA256 fingerprint of the DER public key.
func fingerprint(t *testing.T, k keys) string {
	t.Helper()
	block, _ := pem.Decode(k.pubPEM)
	if block == nil {
		t.Fatal("public key is not PEM")
	}
	sum := sha256.Sum256(block.Bytes)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func keyName(t *testing.T, k keys) string {
	return "key " + k.pub + " (" + fingerprint(t, k) + ")"
}

// wantUntrusted checks that err is an *UntrustedError about img, on one line, saying each
// of found.
func wantUntrusted(t *testing.T, err error, img archImage, found ...string) {
	t.Helper()
	if !errors.Is(err, sign.ErrUntrusted) || !errors.Is(err, types.ErrUntrusted) {
		t.Fatalf("Verify(%s): got %v, want ErrUntrusted (sign's and types', the same)", img, err)
	}
	var ue *sign.UntrustedError
	if !errors.As(err, &ue) {
		t.Fatalf("Verify error %T is not an *UntrustedError", err)
	}
	t.Logf("error: %v", err)
	if ue.Image != img.repo || ue.Digest != img.digest {
		t.Errorf("UntrustedError names %s@%s, want %s@%s", ue.Image, ue.Digest, img.repo, img.digest)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is not one line", msg)
	}
	for _, want := range append([]string{img.digest}, found...) {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}

// checkVerify verifies img under p and checks the outcome: a refusal saying each of found
// when found is set (wantUntrusted), else the evidence of a signature by signer, with
// detail. It returns Verify's error.
func checkVerify(t *testing.T, p types.VerifyPolicy, img archImage, signer, detail string, found []string) error {
	t.Helper()
	got, err := newPolicy(t, p).Verify(context.Background(), img.String())
	if found != nil {
		wantUntrusted(t, err, img, found...)
		return err
	}
	if err != nil {
		t.Fatalf("Verify(%s): %v", img, err)
	}
	want := types.Evidence{Kind: types.EvidenceSignature, Digest: img.digest, Signer: signer, Detail: detail}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify: (-want +got)\n%s", diff)
	}
	return nil
}

func TestPolicyKeys(t *testing.T) {
	reg := testenv.StartRegistry(t)
	a, b := newKeys(t, "a"), newKeys(t, "b")
	tests := []struct {
		name      string
		policy    []keys
		setup     func(t *testing.T, img archImage) archImage // signs; returns what to verify
		want      keys                                        // the signer named, when accepted
		wantFound []string                                    // what the refusal says, when not
	}{{
		name:   "bundle by the policy key",
		policy: []keys{a},
		setup:  signedWith(a, sign.FormatBundle),
		want:   a,
	}, {
		name:   "legacy by the policy key",
		policy: []keys{a},
		setup:  signedWith(a, sign.FormatLegacy),
		want:   a,
	}, {
		name:      "unsigned",
		policy:    []keys{a},
		setup:     func(t *testing.T, img archImage) archImage { return img },
		wantFound: []string{"no signature", ".sig"},
	}, {
		name:      "bundle by another key",
		policy:    []keys{a},
		setup:     signedWith(b, sign.FormatBundle),
		wantFound: []string{"1 signature(s), none by an accepted signer", "signed by key " + fingerprint(t, b) + ", not in the policy"},
	}, {
		name:      "legacy by another key",
		policy:    []keys{a},
		setup:     signedWith(b, sign.FormatLegacy),
		wantFound: []string{"legacy .sig signature that does not verify with " + keyName(t, a)},
	}, {
		name:      "bundle copied from another digest",
		policy:    []keys{a},
		setup:     copiedFrom(a, sign.FormatBundle),
		wantFound: []string{"a signature by " + keyName(t, a) + " names sha256:", "copied from another image"},
	}, {
		name:      "legacy copied from another digest",
		policy:    []keys{a},
		setup:     copiedFrom(a, sign.FormatLegacy),
		wantFound: []string{"copied from another image"},
	}, {
		name:   "rotation: the second key signed",
		policy: []keys{a, b},
		setup:  signedWith(b, sign.FormatBundle),
		want:   b,
	}, {
		name:   "both keys signed: the first listed is named",
		policy: []keys{a, b},
		setup: func(t *testing.T, img archImage) archImage {
			signedWith(b, sign.FormatBundle)(t, img)
			return signedWith(a, sign.FormatLegacy)(t, img)
		},
		want: a,
	}, {
		name:   "a foreign signature besides a trusted one",
		policy: []keys{a},
		setup: func(t *testing.T, img archImage) archImage {
			signedWith(b, sign.FormatBundle)(t, img)
			return signedWith(a, sign.FormatBundle)(t, img)
		},
		want: a,
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.setup(t, pushArch(t, reg.Host+"/ci/key-"+string(rune('a'+i))))
			var signer string
			if tt.wantFound == nil {
				signer = keyName(t, tt.want)
			}
			err := checkVerify(t, keyPolicy(tt.policy...), img, signer, "", tt.wantFound)
			var ue *sign.UntrustedError
			if errors.As(err, &ue) {
				if diff := cmp.Diff(keyPolicy(tt.policy...).Signers[0].String(), ue.Expected[0]); diff != "" {
					t.Errorf("Expected[0]: (-want +got)\n%s", diff)
				}
			}
		})
	}
}

// signedWith signs the image with k in format f.
func signedWith(k keys, f sign.Format) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		mustSign(t, k, f, img.String())
		return img
	}
}

// copiedFrom signs another image of the same repository with k and copies that
// signature onto the image, unchanged.
func copiedFrom(k keys, f sign.Format) func(t *testing.T, img archImage) archImage {
	return func(t *testing.T, img archImage) archImage {
		t.Helper()
		other := pushArch(t, img.repo)
		mustSign(t, k, f, other.String())
		copySignature(t, img.repo, other.digest, img.digest, f)
		return img
	}
}

// TestPolicyRegistryErrorsAreNotUntrusted: a registry that fails is retried by the
// caller, never taken for an image without signatures.
func TestPolicyRegistryErrorsAreNotUntrusted(t *testing.T) {
	reg := testenv.StartRegistry(t)
	a := newKeys(t, "a")
	noRetry := registry.Client{Retry: &registry.RetryPolicy{MaxAttempts: 1}}
	tests := []struct {
		name  string
		match func(*http.Request) bool
	}{
		{"referrers fail", func(r *http.Request) bool {
			return strings.Contains(r.URL.Path, "/referrers/") || strings.Contains(r.URL.Path, "/manifests/sha256-")
		}},
		{"signature tag fails", func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, ".sig") }},
		{"everything fails", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := pushArch(t, reg.Host+"/ci/flaky-"+string(rune('a'+i)))
			mustSign(t, a, sign.FormatLegacy, img.String())
			proxy := faultproxy.Start(t, reg.URL, faultproxy.Config{Errors: 1, Status: http.StatusServiceUnavailable, Match: tt.match})
			pol, err := sign.NewPolicy(context.Background(), keyPolicy(a), noRetry, nil)
			if err != nil {
				t.Fatal(err)
			}
			ref := strings.Replace(img.String(), reg.Host, proxy.Host, 1)
			_, err = pol.Verify(context.Background(), ref)
			if err == nil {
				t.Fatalf("Verify(%s) through a failing registry succeeded", ref)
			}
			t.Logf("error: %v", err)
			if errors.Is(err, types.ErrUntrusted) {
				t.Errorf("Verify through a failing registry: got %v, want a registry error, not ErrUntrusted", err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		pol, err := sign.NewPolicy(context.Background(), keyPolicy(a), noRetry, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = pol.Verify(context.Background(), "127.0.0.1:1/ci/gone@sha256:"+strings.Repeat("0", 64))
		if err == nil || errors.Is(err, types.ErrUntrusted) {
			t.Errorf("Verify of an unreachable registry: got %v, want a registry error, not ErrUntrusted", err)
		}
	})
}

func TestPolicyVerifyWantsADigest(t *testing.T) {
	reg := testenv.StartRegistry(t)
	a := newKeys(t, "a")
	img := pushArch(t, reg.Host+"/ci/tagged")
	_, err := newPolicy(t, keyPolicy(a)).Verify(context.Background(), img.repo+":amd64")
	if err == nil || errors.Is(err, sign.ErrUntrusted) || !strings.Contains(err.Error(), "by digest") {
		t.Errorf("Verify(tag): got %v, want an error asking for a digest", err)
	}
}

func TestNewPolicyErrors(t *testing.T) {
	a := newKeys(t, "a")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(garbage, []byte(`{"mediaType": 42}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const issuer = "https://token.actions.githubusercontent.com"
	keyless := types.TrustedSigner{Issuer: issuer, Subject: "https://github.com/acme/web/.github/workflows/ci.yml@refs/heads/main"}
	tests := []struct {
		name    string
		policy  types.VerifyPolicy
		want    []string // what the error says
		invalid bool     // the policy's shape is wrong: types.ErrInvalidPolicy
	}{{
		name:   "no signers",
		policy: types.VerifyPolicy{},
		want:   []string{"no signers"},
	}, {
		name:   "unreadable key file",
		policy: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: a.pub}, {Key: filepath.Join(dir, "missing.pub")}}},
		want:   []string{"signers[1]", "missing.pub", "reading key"},
	}, {
		name:   "not a public key",
		policy: types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: a.priv}}},
		want:   []string{"signers[0]", "PEM public key"},
	}, {
		name:    "bad subject regexp",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Issuer: issuer, SubjectRegexp: "^https://github.com/acme/(web"}}, TrustedRoot: garbage},
		want:    []string{"signers[0].subjectRegexp", "missing closing )"},
		invalid: true,
	}, {
		name:    "unanchored subject regexp",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Issuer: issuer, SubjectRegexp: "https://github.com/acme/"}}, TrustedRoot: garbage},
		want:    []string{"signers[0].subjectRegexp", "must start with ^"},
		invalid: true,
	}, {
		name:    "keyless signer without a trusted root",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: a.pub}, keyless}},
		want:    []string{"signers[1]", "trustedRoot: must be set", "trusted_root.json"},
		invalid: true,
	}, {
		name:   "unreadable trusted root",
		policy: types.VerifyPolicy{Signers: []types.TrustedSigner{keyless}, TrustedRoot: garbage},
		want:   []string{"trusted root", garbage},
	}, {
		name:   "missing trusted root file",
		policy: types.VerifyPolicy{Signers: []types.TrustedSigner{keyless}, TrustedRoot: filepath.Join(dir, "nope.json")},
		want:   []string{"trusted root", "nope.json"},
	}, {
		name:    "key and identity",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: a.pub, Issuer: issuer}}},
		want:    []string{"signers[0]", "sets key and a keyless identity"},
		invalid: true,
	}, {
		name:    "keyless without issuer",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Subject: "ci@acme.dev"}}},
		want:    []string{"signers[0].issuer", "OIDC issuer"},
		invalid: true,
	}, {
		name:    "keyless without subject",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Issuer: issuer}}},
		want:    []string{"signers[0]", "needs subject"},
		invalid: true,
	}, {
		name:    "subject and regexp",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Issuer: issuer, Subject: "a", SubjectRegexp: "b"}}},
		want:    []string{"signers[0]", "sets both subject and subjectRegexp"},
		invalid: true,
	}, {
		name:    "attestation without predicate type",
		policy:  types.VerifyPolicy{Signers: []types.TrustedSigner{{Key: a.pub}}, Attestations: []types.RequiredAttestation{{BuilderID: "x"}}},
		want:    []string{"attestations[0].predicateType", "predicate type"},
		invalid: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sign.NewPolicy(context.Background(), tt.policy, registry.Client{}, nil)
			if err == nil {
				t.Fatal("NewPolicy succeeded, want an error")
			}
			t.Logf("error: %v", err)
			if errors.Is(err, types.ErrInvalidPolicy) != tt.invalid {
				t.Errorf("errors.Is(err, types.ErrInvalidPolicy) = %v, want %v", !tt.invalid, tt.invalid)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
