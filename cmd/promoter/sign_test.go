package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// pushSignFixture pushes a two-platform index to ref and returns its digest.
func pushSignFixture(t *testing.T, ref string) string {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: mutate.MediaType(img, types.OCIManifestSchema1), Descriptor: v1.Descriptor{Platform: &p}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestSignVerifyKeygenCommands(t *testing.T) {
	reg := testenv.StartRegistry(t)
	dir := t.TempDir()
	t.Setenv("COSIGN_PASSWORD", "correct horse")
	prefix := filepath.Join(dir, "cosign")
	other := filepath.Join(dir, "other")

	for _, p := range []string{prefix, other} {
		out, _, err := runCLI(t, "keygen", "--output-prefix", p)
		if err != nil {
			t.Fatalf("keygen --output-prefix %s: %v", p, err)
		}
		if !strings.Contains(out, p+".key") || !strings.Contains(out, p+".pub") {
			t.Errorf("keygen output %q does not name the files", out)
		}
	}
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v, %v; want 0600", st, err)
	}
	if _, _, err := runCLI(t, "keygen", "--output-prefix", prefix); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("keygen over existing files: got %v, want an 'already exists' error", err)
	}

	tag := reg.Host + "/acme/cli:v1"
	digest := pushSignFixture(t, tag)
	unsigned := reg.Host + "/acme/cli-unsigned:v1"
	pushSignFixture(t, unsigned)

	tests := []struct {
		name     string
		args     []string
		wantErr  error // nil: success
		errText  string
		wantOut  []string
		wantRows int
	}{
		{
			name:     "sign",
			args:     []string{"sign", "--key", prefix + ".key", tag},
			wantOut:  []string{"signed " + digest, "linux/amd64", "linux/arm64"},
			wantRows: 3,
		},
		{
			name:     "sign again",
			args:     []string{"sign", "--key", prefix + ".key", tag},
			wantOut:  []string{"already signed " + digest},
			wantRows: 3,
		},
		{
			name:     "verify",
			args:     []string{"verify", "--key", prefix + ".pub", tag},
			wantOut:  []string{"verified " + digest + " (" + string(sign.DefaultFormat) + ")", "linux/arm64"},
			wantRows: 3,
		},
		{
			name:    "verify with another key",
			args:    []string{"verify", "--key", other + ".pub", tag},
			wantErr: sign.ErrBadSignature,
		},
		{
			name:    "verify unsigned",
			args:    []string{"verify", "--key", prefix + ".pub", unsigned},
			wantErr: sign.ErrNoSignature,
		},
		{
			name:    "sign with an unknown format",
			args:    []string{"sign", "--key", prefix + ".key", "--format", "sig", tag},
			errText: "want bundle or legacy",
		},
		{
			name:    "sign without key",
			args:    []string{"sign", tag},
			errText: `"key" not set`,
		},
		{
			name:     "sign legacy",
			args:     []string{"sign", "--key", prefix + ".key", "--format", "legacy", unsigned},
			wantOut:  []string{"signed sha256:"},
			wantRows: 3,
		},
		{
			name:     "verify legacy",
			args:     []string{"verify", "--key", prefix + ".pub", unsigned},
			wantOut:  []string{"(legacy)"},
			wantRows: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCLI(t, tt.args...)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("promoter %s: got %v, want %v", strings.Join(tt.args, " "), err, tt.wantErr)
				}
				return
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("promoter %s: got %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.errText)
				}
				return
			case err != nil:
				t.Fatalf("promoter %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
			if rows := strings.Count(out, "\n"); rows != tt.wantRows {
				t.Errorf("output has %d lines, want %d:\n%s", rows, tt.wantRows, out)
			}
		})
	}
}

// TestVerifyFlags: verify takes a key or one keyless identity, and says which flag is
// wrong before anything is read.
func TestVerifyFlags(t *testing.T) {
	dir := t.TempDir()
	notRoot := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(notRoot, []byte(`{"mediaType": "nonsense"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		ref    = "127.0.0.1:1/acme/web:v1"
		issuer = "https://token.actions.githubusercontent.com"
		id     = "https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main"
	)
	tests := []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"neither key nor identity", nil, []string{"nothing to verify with: give --key PUB, or --trusted-root"}},
		{"key and identity", []string{"--key", "cosign.pub", "--certificate-identity", id}, []string{"--key and the keyless flags"}},
		{"key and trusted root", []string{"--key", "cosign.pub", "--trusted-root", notRoot}, []string{"--key and the keyless flags"}},
		{"no trusted root", []string{"--certificate-oidc-issuer", issuer, "--certificate-identity", id}, []string{"--trusted-root: must be set"}},
		{"no issuer", []string{"--trusted-root", notRoot, "--certificate-identity", id}, []string{"--certificate-oidc-issuer: must be set"}},
		{"no identity", []string{"--trusted-root", notRoot, "--certificate-oidc-issuer", issuer}, []string{"--certificate-identity or --certificate-identity-regexp: a keyless signer needs"}},
		{"identity and regexp", []string{"--trusted-root", notRoot, "--certificate-oidc-issuer", issuer, "--certificate-identity", id, "--certificate-identity-regexp", "^https://github.com/acme/"}, []string{"sets both"}},
		{"unanchored regexp", []string{"--trusted-root", notRoot, "--certificate-oidc-issuer", issuer, "--certificate-identity-regexp", "github.com/acme/"}, []string{"--certificate-identity-regexp: \"github.com/acme/\" must start with ^"}},
		{"bad regexp", []string{"--trusted-root", notRoot, "--certificate-oidc-issuer", issuer, "--certificate-identity-regexp", "^(acme"}, []string{"is not a Go regular expression"}},
		{"every problem at once", []string{"--certificate-identity-regexp", "acme"}, []string{"--trusted-root: must be set", "; --certificate-oidc-issuer: must be set", "; --certificate-identity-regexp: \"acme\" must start with ^"}},
		{"not a trusted root", []string{"--trusted-root", notRoot, "--certificate-oidc-issuer", issuer, "--certificate-identity", id}, []string{"loading trusted root " + notRoot}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"verify"}, tt.args...), ref)
			_, _, err := runCLI(t, args...)
			if err == nil {
				t.Fatalf("promoter %s: got no error, want one containing %q", strings.Join(args, " "), tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("promoter %s: got %v, want an error containing %q", strings.Join(args, " "), err, w)
				}
			}
		})
	}
}

// TestVerifyKeyless signs an index keyless with a real private Fulcio and timestamp
// authority, then verifies it with cosign's flags: the signer's identity (exact or by
// regexp) verifies the index and each child; another identity fails naming the one found.
func TestVerifyKeyless(t *testing.T) {
	kube := testenv.StartKube(t, testenv.WithPublicIssuer())
	ss := testenv.StartSigstore(t, kube)
	reg := testenv.StartRegistry(t)
	const ns = "ci"
	s, err := sign.NewKeylessSigner(sign.Keyless{
		FulcioURL: ss.FulcioURL, IdentityToken: ss.IdentityToken(t, ns, "images"),
		TSAURL: ss.TSAURL, TrustedRoot: ss.TrustedRoot,
	}, registry.Client{})
	if err != nil {
		t.Fatal(err)
	}
	tag := reg.Host + "/acme/keyless:v1"
	digest := pushSignFixture(t, tag)
	if _, err := s.Sign(context.Background(), tag); err != nil {
		t.Fatalf("signing %s keyless: %v", tag, err)
	}
	unsigned := reg.Host + "/acme/keyless-unsigned:v1"
	pushSignFixture(t, unsigned)
	signer := ss.Identity(ns, "images")
	keyless := []string{"verify", "--trusted-root", ss.TrustedRoot, "--certificate-oidc-issuer", ss.Issuer}

	tests := []struct {
		name     string
		args     []string
		wantErr  error // nil: success
		errText  string
		wantOut  []string
		wantRows int
	}{
		{
			name:     "the signer's identity",
			args:     []string{"--certificate-identity", signer, tag},
			wantOut:  []string{"verified " + digest + " (bundle)", "linux/amd64", "linux/arm64"},
			wantRows: 3,
		},
		{
			name:     "an identity regexp",
			args:     []string{"--certificate-identity-regexp", "^https://kubernetes.io/namespaces/" + ns + "/", reg.Host + "/acme/keyless@" + digest},
			wantOut:  []string{"verified " + digest + " (bundle)"},
			wantRows: 3,
		},
		{
			name:    "another identity",
			args:    []string{"--certificate-identity", ss.Identity(ns, "intruder"), tag},
			wantErr: sign.ErrBadSignature,
			errText: "certificate identity " + signer + " from " + ss.Issuer + " does not match",
		},
		{
			name:    "a regexp the identity does not match",
			args:    []string{"--certificate-identity-regexp", "^https://kubernetes.io/namespaces/prod/", tag},
			wantErr: sign.ErrBadSignature,
			errText: "certificate identity " + signer + " from " + ss.Issuer + " does not match",
		},
		{
			name:    "unsigned",
			args:    []string{"--certificate-identity", signer, unsigned},
			wantErr: sign.ErrNoSignature,
			errText: "sign it with a keyless `cosign sign` as identity " + signer + " from " + ss.Issuer,
		},
		{
			name:    "another issuer",
			args:    []string{"--certificate-oidc-issuer", "https://token.actions.githubusercontent.com", "--certificate-identity", signer, tag},
			wantErr: sign.ErrBadSignature,
			errText: "certificate identity " + signer + " from " + ss.Issuer + " does not match",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(slices.Clone(keyless), tt.args...)
			out, _, err := runCLI(t, args...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("promoter %s: got %v, want %v containing %q", strings.Join(args, " "), err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("promoter %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
			if rows := strings.Count(out, "\n"); rows != tt.wantRows {
				t.Errorf("output has %d lines, want %d:\n%s", rows, tt.wantRows, out)
			}
		})
	}
}
