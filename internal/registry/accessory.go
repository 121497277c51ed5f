package registry

import (
	"regexp"
	"strings"
)

// Suffixes of the tags cosign attaches to a manifest, after its sha256-<hex>: signatures,
// attestations and SBOMs. The bare sha256-<hex> (no suffix) is the OCI referrers fallback
// tag, the referrers index of a registry without the referrers API.
const (
	SignatureSuffix   = ".sig"
	AttestationSuffix = ".att"
	SBOMSuffix        = ".sbom"
	// ReferrersFallback names the OCI 1.1 referrers fallback tag (AccessoryTag with it).
	ReferrersFallback = ""
)

// AccessorySuffixes are the cosign tag suffixes, in the order cosign documents them.
var AccessorySuffixes = []string{SignatureSuffix, AttestationSuffix, SBOMSuffix}

// AccessoryTag is the tag attached to the manifest digest ("sha256:<hex>") with suffix:
// "sha256-<hex>.sig" for SignatureSuffix, "sha256-<hex>" for ReferrersFallback. The
// algorithm is kept as it is, as cosign and go-containerregistry name it.
func AccessoryTag(digest, suffix string) string {
	return strings.Replace(digest, ":", "-", 1) + suffix
}

// accessoryPrefix starts every tag AccessoryTag writes for a sha256 digest.
const accessoryPrefix = "sha256-"

// accessoryTag matches what AccessoryTag writes for a sha256 digest.
var accessoryTag = regexp.MustCompile(`^` + accessoryPrefix + `[0-9a-f]{64}(\.(sig|att|sbom))?$`)

// IsAccessoryTag reports whether tag is one that cosign or the referrers fallback attach to
// a manifest (sha256-<hex>, and sha256-<hex>.sig, .att or .sbom): it holds signatures,
// attestations or referrers, never an image of its own.
func IsAccessoryTag(tag string) bool { return accessoryTag.MatchString(tag) }

// IsReservedTag reports whether tag is in the accessories' namespace: any tag starting
// with sha256-, which cosign and registries' clean-up tools take for an accessory, even
// when it is not one IsAccessoryTag would match. An image (a release) must not take one.
func IsReservedTag(tag string) bool { return strings.HasPrefix(tag, accessoryPrefix) }
