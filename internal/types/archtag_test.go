package types

import (
	"errors"
	"strings"
	"testing"
)

func TestArchTagRenderAndMatch(t *testing.T) {
	all := []Platform{MustPlatform("linux/amd64"), MustPlatform("linux/arm64"), MustPlatform("linux/arm/v7")}
	tests := []struct {
		pattern  ArchTag
		tag      string
		wantRev  string
		wantPlat string
		wantOK   bool
	}{
		{"{revision}-{arch}{variant}", "abc123-amd64", "abc123", "linux/amd64", true},
		{"{revision}-{arch}{variant}", "abc123-armv7", "abc123", "linux/arm/v7", true},
		{"{revision}-{arch}{variant}", "feature-x-arm64", "feature-x", "linux/arm64", true},
		{"{revision}-{arch}{variant}", "abc123", "", "", false},
		{"{revision}-{arch}{variant}", "sha256-0123.sig", "", "", false},
		{"{os}-{arch}{variant}-{revision}", "linux-arm64-deadbeef", "deadbeef", "linux/arm64", true},
		{"{revision}.{os}.{arch}", "v1.2.3.linux.amd64", "v1.2.3", "linux/amd64", true},
	}
	for _, tc := range tests {
		t.Run(string(tc.pattern)+"/"+tc.tag, func(t *testing.T) {
			rev, p, ok := tc.pattern.Compile(all).Match(tc.tag)
			if ok != tc.wantOK || rev != tc.wantRev || (ok && p.String() != tc.wantPlat) {
				t.Fatalf("Match(%q) = %q, %v, %v; want %q, %s, %v", tc.tag, rev, p, ok, tc.wantRev, tc.wantPlat, tc.wantOK)
			}
			if ok {
				if back := tc.pattern.Render(rev, p); back != tc.tag {
					t.Errorf("Render(%q, %s) = %q, want %q", rev, p, back, tc.tag)
				}
			}
		})
	}
}

func TestArchTagValidate(t *testing.T) {
	arm := []Platform{MustPlatform("linux/arm/v6"), MustPlatform("linux/arm/v7")}
	tests := []struct {
		pattern ArchTag
		wantErr error
		// wantMsg is what the error says to fix: the message is what the user reads.
		wantMsg string
	}{
		{"{revision}-{arch}", ErrInvalidArchTag, "same tag for linux/arm/v6 and linux/arm/v7; add {variant}"},
		{"{revision}-{arch}{variant}", nil, ""},
		{"{arch}", ErrInvalidArchTag, "must contain {revision} exactly once"},
		{"{revision}-{platform}", ErrInvalidArchTag, "unknown placeholder {platform}"},
		{"{revision}/{arch}{variant}", ErrInvalidArchTag, "not a valid tag"},
	}
	for _, tc := range tests {
		err := tc.pattern.Validate(arm)
		if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
			t.Errorf("Validate(%q) = %v, want %v", tc.pattern, err, tc.wantErr)
		} else if err != nil && !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("Validate(%q) = %v, want it to say %q", tc.pattern, err, tc.wantMsg)
		}
	}
}
