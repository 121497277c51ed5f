package registry_test

import (
	"strings"
	"testing"

	"github.com/promoter-dev/promoter/internal/registry"
)

func TestAccessoryTag(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	tests := []struct {
		name   string
		suffix string
		want   string
	}{
		{"signature", registry.SignatureSuffix, "sha256-" + hex + ".sig"},
		{"attestation", registry.AttestationSuffix, "sha256-" + hex + ".att"},
		{"sbom", registry.SBOMSuffix, "sha256-" + hex + ".sbom"},
		{"referrers fallback", registry.ReferrersFallback, "sha256-" + hex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := registry.AccessoryTag("sha256:"+hex, tt.suffix)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !registry.IsAccessoryTag(got) {
				t.Errorf("IsAccessoryTag(%q) = false, want true for what AccessoryTag writes", got)
			}
		})
	}
}

// TestIsAccessoryTag: the tags cosign and the referrers fallback write, and the wider
// sha256- namespace no image may take.
func TestIsAccessoryTag(t *testing.T) {
	hex := strings.Repeat("0f", 32)
	tests := []struct {
		tag            string
		want, reserved bool
	}{
		{"sha256-" + hex, true, true},
		{"sha256-" + hex + ".sig", true, true},
		{"sha256-" + hex + ".att", true, true},
		{"sha256-" + hex + ".sbom", true, true},
		{"sha256-" + hex + ".txt", false, true},
		{"sha256-" + hex[:63], false, true},
		{"sha256-" + strings.ToUpper(hex), false, true},
		{"sha256-release", false, true},
		{"v1.2.3", false, false},
		{"latest", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		if got := registry.IsAccessoryTag(tt.tag); got != tt.want {
			t.Errorf("IsAccessoryTag(%q) = %v, want %v", tt.tag, got, tt.want)
		}
		if got := registry.IsReservedTag(tt.tag); got != tt.reserved {
			t.Errorf("IsReservedTag(%q) = %v, want %v", tt.tag, got, tt.reserved)
		}
	}
}
