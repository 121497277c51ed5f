// Package promote copies a tested image — an index with its children, layers and configs,
// plus every signature and referrer attached to any of them — byte for byte to production
// registries, and refuses anything that would change what a published tag means.
//
// It owns copy planning and its sharing among concurrent promotions (plan.go), blob
// transfer with cross-repository mounts and streaming (blob.go), one source read per blob
// for every destination that uploads it (fanout.go), manifest writes and tag immutability
// (copy.go), and per-host request limits (limit.go). Retries live in the transport that internal/registry.Client provides.
//
// It must not sign or verify anything itself: the signature gate is Options.Verify, given by
// the caller. It must not keep state between promotions beyond the per-host limits and the
// reads under way: a promotion interrupted at any point is completed by running it again.
package promote
