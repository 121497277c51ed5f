package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/testenv"
)

// slsaV1Predicate is a SLSA v1 provenance predicate, as CI would attest it.
const slsaV1Predicate = `{
  "buildDefinition": {"buildType": "https://acme.dev/build/v1", "externalParameters": {}},
  "runDetails": {"builder": {"id": "https://github.com/acme/builders/.github/workflows/build.yml@refs/tags/v1"}}
}`

// platformDigests maps each platform child of the index at ref to its digest.
func platformDigests(t *testing.T, ref string) map[string]string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range im.Manifests {
		out[m.Platform.String()] = m.Digest.String()
	}
	return out
}

// cosignAttest attests ref (by digest) with the real cosign CLI, key and its password
// from $COSIGN_PASSWORD, as CI does: a SLSA v1 provenance in cosign v3's default format (a
// sigstore bundle referrer), with no transparency log.
func cosignAttest(t *testing.T, key, predicate, ref string) {
	t.Helper()
	args := []string{"attest", "--key", key, "--type", "slsaprovenance1", "--predicate", predicate,
		"--tlog-upload=false", "--use-signing-config=false", ref}
	// testenv.Cosign's offline environment, with a deadline: a cosign that waits on a
	// network it must not reach fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	offline := testenv.Cosign(t, testenv.Tool(t, "cosign"), args...)
	cmd := exec.CommandContext(ctx, offline.Path, args...)
	cmd.Env = append(offline.Env, "COSIGN_YES=true")
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestVerifyAttestationCommand: attestations written by the real cosign CLI pass
// `promoter verify --type` (cosign's short name or the URI) on the index and each child
// once every digest has one; a child without one, another key and another type fail,
// naming what is missing.
func TestVerifyAttestationCommand(t *testing.T) {
	testenv.Tool(t, "cosign")
	reg := testenv.StartRegistry(t)
	dir := t.TempDir()
	t.Setenv("COSIGN_PASSWORD", "correct horse")
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if _, _, err := runCLI(t, "keygen", "--output-prefix", p); err != nil {
			t.Fatalf("keygen: %v", err)
		}
	}
	predicate := filepath.Join(dir, "provenance.json")
	if err := os.WriteFile(predicate, []byte(slsaV1Predicate), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := reg.Host + "/acme/attested"
	tag := repo + ":v1"
	index := pushSignFixture(t, tag)
	children := platformDigests(t, tag)
	if _, _, err := runCLI(t, "sign", "--key", a+".key", tag); err != nil {
		t.Fatalf("sign: %v", err)
	}

	const slsaV1 = "https://slsa.dev/provenance/v1"
	tests := []struct {
		name     string
		attest   []string // digests cosign attests with key a first
		args     []string
		wantErr  error // nil: success
		errText  []string
		wantOut  []string
		wantRows int
	}{
		{
			name:    "a child not attested",
			attest:  []string{index, children["linux/amd64"]},
			args:    []string{"verify", "--type", "slsaprovenance1", "--key", a + ".pub", tag},
			wantErr: sign.ErrNoAttestation,
			errText: []string{children["linux/arm64"] + " (linux/arm64)", "no in-toto attestation of type " + slsaV1},
		},
		{
			name:     "every digest attested",
			attest:   []string{children["linux/arm64"]},
			args:     []string{"verify", "--type", "slsaprovenance1", "--key", a + ".pub", tag},
			wantOut:  []string{"verified " + index + " (attestation " + slsaV1 + ", signed by key SHA256:", children["linux/amd64"] + " linux/amd64 (attestation " + slsaV1, "linux/arm64"},
			wantRows: 3,
		},
		{
			name:     "the predicate type's URI",
			args:     []string{"verify", "--type", slsaV1, "--key", a + ".pub", repo + "@" + index},
			wantOut:  []string{"verified " + index + " (attestation " + slsaV1},
			wantRows: 3,
		},
		{
			name:     "either key of a rotation",
			args:     []string{"verify", "--type", "slsaprovenance1", "--key", b + ".pub", "--key", a + ".pub", tag},
			wantRows: 3,
		},
		{
			name:     "the signatures still verify without --type",
			args:     []string{"verify", "--key", a + ".pub", tag},
			wantOut:  []string{"verified " + index + " (bundle)"},
			wantRows: 3,
		},
		{
			name:    "another key",
			args:    []string{"verify", "--type", "slsaprovenance1", "--key", b + ".pub", tag},
			wantErr: sign.ErrBadAttestation,
			errText: []string{"verifying " + index + ": attestation not accepted", "none verifies with this public key", "not in the policy"},
		},
		{
			name:    "another type",
			args:    []string{"verify", "--type", "spdxjson", "--key", a + ".pub", tag},
			wantErr: sign.ErrNoAttestation,
			errText: []string{"verifying " + index + ": no attestation found", "of type https://spdx.dev/Document"},
		},
		{
			name:    "not a predicate type",
			args:    []string{"verify", "--type", "provenance", "--key", a + ".pub", tag},
			errText: []string{"--type: predicate type \"provenance\": want a URI or one of slsaprovenance|"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, d := range tt.attest {
				cosignAttest(t, a+".key", predicate, repo+"@"+d)
			}
			out, _, err := runCLI(t, tt.args...)
			if tt.wantErr != nil || tt.errText != nil {
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) || err == nil {
					t.Fatalf("promoter %s: got %v, want %v", strings.Join(tt.args, " "), err, tt.wantErr)
				}
				t.Logf("promoter %s: %v", strings.Join(tt.args, " "), err)
				for _, w := range tt.errText {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("promoter %s: error %q does not say %q", strings.Join(tt.args, " "), err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("promoter %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
			t.Logf("promoter %s:\n%s", strings.Join(tt.args, " "), out)
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
