package types

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    Platform
		wantErr error
	}{
		{in: "linux/amd64", want: Platform{OS: "linux", Architecture: "amd64"}},
		{in: "linux/arm/v7", want: Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{in: "linux/arm64/v8", want: Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{in: "linux/arm65", wantErr: ErrInvalidPlatform},
		{in: "linux", wantErr: ErrInvalidPlatform},
		{in: "linux/arm/v9", wantErr: ErrInvalidPlatform},
		{in: "plan9/amd64", wantErr: ErrInvalidPlatform},
		{in: "linux/amd64/v3/x", wantErr: ErrInvalidPlatform},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePlatform(tc.in)
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("ParsePlatform(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParsePlatform(%q) (-want +got):\n%s", tc.in, diff)
			}
			if tc.wantErr == nil && got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestPlatformMatches(t *testing.T) {
	tests := []struct {
		want, got string
		match     bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm/v7", "linux/arm/v6", false},
		{"linux/arm/v7", "linux/arm/v7", true},
	}
	for _, tc := range tests {
		if got := MustPlatform(tc.want).Matches(MustPlatform(tc.got)); got != tc.match {
			t.Errorf("%s.Matches(%s) = %v, want %v", tc.want, tc.got, got, tc.match)
		}
	}
}

func TestSortPlatformsAndToken(t *testing.T) {
	ps := []Platform{MustPlatform("linux/arm64"), MustPlatform("linux/arm/v7"), MustPlatform("linux/amd64"), MustPlatform("linux/arm/v6")}
	SortPlatforms(ps)
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	want := []string{"linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if got := BuildSubject(MustPlatform("linux/arm/v7")); got != "promoter.builds.linux.arm.v7" {
		t.Errorf("BuildSubject = %q", got)
	}
}
