//go:build !dev

package main

import (
	"errors"
	"strings"
	"testing"
)

// TestDevNotBuilt: a binary built without -tags dev answers `promoter dev`, whatever flags
// follow, with how to get it (the message is the feature), and --help shows the same.
func TestDevNotBuilt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr error
	}{
		{name: "the README's command", args: []string{"dev", "--demo"}, wantErr: errDevNotBuilt},
		{name: "flags of the real command", args: []string{"dev", "--listen", "127.0.0.1:0", "--data-dir", "x"}, wantErr: errDevNotBuilt},
		{name: "help", args: []string{"dev", "--help"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := runCLI(t, tc.args...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("promoter %s: got error %v, want %v", strings.Join(tc.args, " "), err, tc.wantErr)
			}
			said := stdout
			if err != nil {
				said = err.Error()
			}
			for _, want := range []string{"go run -tags dev ./cmd/promoter dev --demo", "go install -tags dev github.com/promoter-dev/promoter/cmd/promoter@latest"} {
				if !strings.Contains(said, want) {
					t.Errorf("promoter %s says %q, want it to name %q", strings.Join(tc.args, " "), said, want)
				}
			}
		})
	}
}
