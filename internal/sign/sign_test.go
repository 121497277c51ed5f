package sign_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

var formats = []sign.Format{sign.FormatBundle, sign.FormatLegacy}

func TestSignThenVerify(t *testing.T) {
	reg := testenv.StartRegistry(t)
	k := newKeys(t, "a")
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			ctx := context.Background()
			p := pushIndex(t, reg.Host+"/acme/web-"+string(f))

			got, err := signer(k, f).Sign(ctx, p.tag)
			if err != nil {
				t.Fatalf("Sign(%s): %v", p.tag, err)
			}
			want := []sign.Signed{
				{Digest: p.index},
				{Digest: p.children["linux/amd64"], Platform: "linux/amd64"},
				{Digest: p.children["linux/arm64"], Platform: "linux/arm64"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Sign: (-want +got)\n%s", diff)
			}

			checked, err := verifier(k).Verify(ctx, p.tag)
			if err != nil {
				t.Fatalf("Verify(%s): %v", p.tag, err)
			}
			wantChecked := []sign.Checked{
				{Digest: p.index, Format: f},
				{Digest: p.children["linux/amd64"], Platform: "linux/amd64", Format: f},
				{Digest: p.children["linux/arm64"], Platform: "linux/arm64", Format: f},
			}
			if diff := cmp.Diff(wantChecked, checked); diff != "" {
				t.Errorf("Verify: (-want +got)\n%s", diff)
			}

			// Each child verifies on its own too, by digest.
			for plat, d := range p.children {
				c, err := verifier(k).Verify(ctx, p.at(d))
				if err != nil {
					t.Errorf("Verify(%s child %s): %v", plat, d, err)
				} else if len(c) != 1 || c[0].Platform != plat {
					t.Errorf("Verify(%s) = %+v, want one check for platform %s", d, c, plat)
				}
			}

			// The attestation manifest is not signed.
			_, err = verifier(k).Verify(ctx, p.at(p.attestation))
			if !errors.Is(err, sign.ErrNoSignature) {
				t.Errorf("Verify(attestation manifest): got %v, want ErrNoSignature", err)
			}
			if n := countSignatures(t, p.repo, p.attestation, f); n != 0 {
				t.Errorf("attestation manifest has %d signatures, want 0", n)
			}
		})
	}
}

// TestVerifyDuringAKeyRotation: revisions signed by the old key and by the new one both
// verify while both public keys are listed; neither key alone vouches for the other's.
func TestVerifyDuringAKeyRotation(t *testing.T) {
	reg := testenv.StartRegistry(t)
	old, cur := newKeys(t, "a"), newKeys(t, "b")
	ctx := context.Background()
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			before, after := pushIndex(t, reg.Host+"/acme/before-"+string(f)), pushIndex(t, reg.Host+"/acme/after-"+string(f))
			if _, err := signer(old, f).Sign(ctx, before.tag); err != nil {
				t.Fatal(err)
			}
			if _, err := signer(cur, f).Sign(ctx, after.tag); err != nil {
				t.Fatal(err)
			}
			both, err := sign.NewVerifier(registry.Client{}, old.verifier, cur.verifier)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{before.tag, after.tag} {
				if checked, err := both.Verify(ctx, p); err != nil || len(checked) != 3 {
					t.Errorf("Verify(%s) with both keys: %v, %+v; want the index and both children", p, err, checked)
				}
			}
			_, err = verifier(cur).Verify(ctx, before.tag)
			var verr *sign.VerifyError
			if !errors.As(err, &verr) || !errors.Is(err, sign.ErrBadSignature) {
				t.Errorf("the new key alone verified the old key's signature: %v", err)
			}
		})
	}
	if _, err := sign.NewVerifier(registry.Client{}); err == nil {
		t.Error("NewVerifier without a key: got no error")
	}
}

func TestSignTwiceDoesNotPileUp(t *testing.T) {
	reg := testenv.StartRegistry(t)
	k := newKeys(t, "a")
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			ctx := context.Background()
			p := pushIndex(t, reg.Host+"/acme/twice-"+string(f))
			if _, err := signer(k, f).Sign(ctx, p.tag); err != nil {
				t.Fatal(err)
			}
			again, err := signer(k, f).Sign(ctx, p.at(p.index)) // by digest this time
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != 3 {
				t.Fatalf("second Sign returned %d results, want 3", len(again))
			}
			for _, s := range again {
				if !s.Skipped {
					t.Errorf("second Sign of %s %s: Skipped = false, want true", s.Digest, s.Platform)
				}
			}
			for _, d := range []string{p.index, p.children["linux/amd64"], p.children["linux/arm64"]} {
				if n := countSignatures(t, p.repo, d, f); n != 1 {
					t.Errorf("%s has %d %s signatures after signing twice, want 1", d, n, f)
				}
			}

			// Another key adds its own signature: skipping is per key.
			other := newKeys(t, "b")
			res, err := signer(other, f).Sign(ctx, p.at(p.children["linux/amd64"]))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || res[0].Skipped {
				t.Errorf("Sign with another key = %+v, want one new signature", res)
			}
			if n := countSignatures(t, p.repo, p.children["linux/amd64"], f); n != 2 {
				t.Errorf("after a second key signed: %d signatures, want 2", n)
			}
			for _, kk := range []keys{k, other} {
				if _, err := verifier(kk).Verify(ctx, p.at(p.children["linux/amd64"])); err != nil {
					t.Errorf("Verify with one of two signing keys: %v", err)
				}
			}
		})
	}
}

func TestVerifyErrors(t *testing.T) {
	reg := testenv.StartRegistry(t)
	k := newKeys(t, "a")
	wrong := newKeys(t, "b")
	ctx := context.Background()
	for _, f := range formats {
		tests := []struct {
			name    string
			setup   func(t *testing.T, p pushed) string // returns the ref to verify
			key     keys
			wantErr error
			wantMsg string
		}{{
			name:    "unsigned",
			setup:   func(t *testing.T, p pushed) string { return p.tag },
			key:     k,
			wantErr: sign.ErrNoSignature,
			wantMsg: "promoter sign",
		}, {
			name: "wrong key",
			setup: func(t *testing.T, p pushed) string {
				mustSign(t, k, f, p.tag)
				return p.tag
			},
			key:     wrong,
			wantErr: sign.ErrBadSignature,
			wantMsg: "public half of the signing key",
		}, {
			name: "signature copied from another digest",
			setup: func(t *testing.T, p pushed) string {
				mustSign(t, k, f, p.at(p.children["linux/amd64"]))
				copySignature(t, p.repo, p.children["linux/amd64"], p.children["linux/arm64"], f)
				return p.at(p.children["linux/arm64"])
			},
			key:     k,
			wantErr: sign.ErrWrongDigest,
			wantMsg: "copied from another image",
		}, {
			name: "corrupted signature layer",
			setup: func(t *testing.T, p pushed) string {
				mustSign(t, k, f, p.tag)
				corruptSignature(t, p.repo, p.children["linux/arm64"], f)
				return p.at(p.children["linux/arm64"])
			},
			key:     k,
			wantErr: sign.ErrBadSignature,
			wantMsg: "none verifies",
		}}
		for i, tt := range tests {
			t.Run(string(f)+"/"+tt.name, func(t *testing.T) {
				p := pushIndex(t, reg.Host+"/acme/err-"+string(f)+"-"+string(rune('a'+i)))
				ref := tt.setup(t, p)
				_, err := verifier(tt.key).Verify(ctx, ref)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify(%s): got %v, want %v", ref, err, tt.wantErr)
				}
				t.Logf("error: %v", err)
				var ve *sign.VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("Verify error %T is not a *VerifyError", err)
				}
				if ve.Digest == "" || !strings.Contains(err.Error(), ve.Digest) {
					t.Errorf("error %q does not name the digest %q", err, ve.Digest)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not say %q", err, tt.wantMsg)
				}
			})
		}
	}
}

func mustSign(t *testing.T, k keys, f sign.Format, ref string) {
	t.Helper()
	if _, err := signer(k, f).Sign(context.Background(), ref); err != nil {
		t.Fatalf("Sign(%s): %v", ref, err)
	}
}

func TestVerifyRegistryErrorsAreNotVerifyErrors(t *testing.T) {
	reg := testenv.StartRegistry(t)
	k := newKeys(t, "a")
	_, err := verifier(k).Verify(context.Background(), reg.Host+"/acme/missing:v1")
	if err == nil {
		t.Fatal("Verify of a missing image succeeded")
	}
	var ve *sign.VerifyError
	if errors.As(err, &ve) {
		t.Errorf("Verify of a missing image returned a *VerifyError (%v), want the registry error", err)
	}
	if !strings.Contains(err.Error(), "acme/missing:v1") {
		t.Errorf("error %q does not name the reference", err)
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    sign.Format
		wantErr error
	}{
		{"", sign.DefaultFormat, nil},
		{"bundle", sign.FormatBundle, nil},
		{"legacy", sign.FormatLegacy, nil},
		{"sig", "", sign.ErrUnknownFormat},
	}
	for _, tt := range tests {
		got, err := sign.ParseFormat(tt.in)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
