package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

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
