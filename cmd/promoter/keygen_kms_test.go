package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestKeygenKMS: `promoter keygen --kms` creates the KMS key and writes its public key,
// which verifies what `promoter sign --key awskms://…` signed, as the KMS reference does.
// Not parallel: StartKMS sets the AWS environment.
func TestKeygenKMS(t *testing.T) {
	kms := testenv.StartKMS(t)
	reg := testenv.StartRegistry(t)
	dir := t.TempDir()
	prefix := filepath.Join(dir, "kms")
	ref := kms.Ref("promoter-keygen")
	tag := reg.Host + "/acme/kms:v1"
	digest := pushSignFixture(t, tag)

	tests := []struct {
		name     string
		args     []string
		errText  string // "": success
		wantOut  []string
		wantRows int
	}{
		{
			name:     "create the key",
			args:     []string{"keygen", "--kms", ref, "--output-prefix", prefix},
			wantOut:  []string{"KMS key " + ref + " ready", "public key written to " + prefix + ".pub"},
			wantRows: 2,
		},
		{
			name:    "the public key file exists",
			args:    []string{"keygen", "--kms", ref, "--output-prefix", prefix},
			errText: prefix + ".pub already exists",
		},
		{
			name:     "print the public key of the key already there",
			args:     []string{"keygen", "--kms", ref, "--output-prefix", "-"},
			wantOut:  []string{"-----BEGIN PUBLIC KEY-----"},
			wantRows: 4, // an ECDSA P-256 key in PEM
		},
		{
			name:    "not a KMS reference",
			args:    []string{"keygen", "--kms", "cosign.key"},
			errText: "--kms cosign.key: want a KMS key reference",
		},
		{
			name:     "sign with the KMS key",
			args:     []string{"sign", "--key", ref, tag},
			wantOut:  []string{"signed " + digest},
			wantRows: 3,
		},
		{
			name:     "verify with the public key written",
			args:     []string{"verify", "--key", prefix + ".pub", tag},
			wantOut:  []string{"verified " + digest},
			wantRows: 3,
		},
		{
			name:     "verify with the KMS key",
			args:     []string{"verify", "--key", ref, tag},
			wantOut:  []string{"verified " + digest},
			wantRows: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCLI(t, tt.args...)
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("promoter %s: got %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.errText)
				}
				return
			}
			if err != nil {
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
	// What --output-prefix - printed is the key the file holds.
	written, err := os.ReadFile(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	printed, _, err := runCLI(t, "keygen", "--kms", ref, "--output-prefix", "-")
	if err != nil || printed != string(written) {
		t.Errorf("keygen --kms --output-prefix -: got %q, %v; want the public key written, %q", printed, err, written)
	}
	if st, err := os.Stat(prefix + ".key"); err == nil {
		t.Errorf("keygen --kms wrote a private key file %s (%v): the key must stay in the KMS", prefix+".key", st.Mode())
	}
}
