package types

import (
	"sort"
	"strings"
)

// Platform is an OCI platform as promoter handles it: os, architecture and optional variant.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// knownPlatforms lists the os/architecture pairs Go and BuildKit build for; variants are
// checked per architecture in knownVariants.
var knownPlatforms = map[string][]string{
	"linux":   {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64"},
	"windows": {"amd64", "arm64"},
	"freebsd": {"amd64", "arm64"},
}

var knownVariants = map[string][]string{
	"arm":   {"v5", "v6", "v7"},
	"arm64": {"v8"},
	"amd64": {"v2", "v3", "v4"},
}

// ParsePlatform parses "os/arch[/variant]" and checks it names a known platform; an error
// wraps ErrInvalidPlatform.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, breaks(ErrInvalidPlatform, "%q is not a platform: want os/arch or os/arch/variant", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	if !contains(knownPlatforms[p.OS], p.Architecture) {
		return Platform{}, breaks(ErrInvalidPlatform, "%q is not a known platform", s)
	}
	if p.Variant != "" && !contains(knownVariants[p.Architecture], p.Variant) {
		return Platform{}, breaks(ErrInvalidPlatform, "%q is not a known platform: variant %q does not exist for %s", s, p.Variant, p.Architecture)
	}
	return p, nil
}

// MustPlatform is ParsePlatform for literals in code and tests; it panics on error.
func MustPlatform(s string) Platform {
	p, err := ParsePlatform(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String renders "os/arch[/variant]".
func (p Platform) String() string {
	if p.Variant == "" {
		return p.OS + "/" + p.Architecture
	}
	return p.OS + "/" + p.Architecture + "/" + p.Variant
}

// Token renders the platform as one NATS subject token group: "os.arch[.variant]".
func (p Platform) Token() string {
	return strings.ReplaceAll(p.String(), "/", ".")
}

// Matches reports whether a platform read from an image config is this platform. An absent
// variant in the image matches the default variant of arm64 ("v8"), as containerd does.
func (p Platform) Matches(got Platform) bool {
	if p.OS != got.OS || p.Architecture != got.Architecture {
		return false
	}
	if p.Variant == got.Variant {
		return true
	}
	if p.Architecture == "arm64" && (p.Variant == "" || p.Variant == "v8") && (got.Variant == "" || got.Variant == "v8") {
		return true
	}
	return false
}

// Less orders platforms by os, architecture, then variant: the fixed order of children in
// every index promoter writes.
func (p Platform) Less(q Platform) bool {
	if p.OS != q.OS {
		return p.OS < q.OS
	}
	if p.Architecture != q.Architecture {
		return p.Architecture < q.Architecture
	}
	return p.Variant < q.Variant
}

// SortPlatforms sorts ps in place into the fixed index order.
func SortPlatforms(ps []Platform) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Less(ps[j]) })
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
