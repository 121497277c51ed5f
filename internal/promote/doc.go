// Package promote copies a tested image — an index with its children, layers and configs,
// plus every signature and referrer attached to any of them — byte for byte to production
// registries, and refuses anything that would change what a published tag means.
//
// Its one entry is Promoter.Promote(ctx, src, targets): a Target is a destination
// reference, the tags to move there afterwards, the tags that may move, and whether a
// signature is required (DestinationTarget and ReleaseTarget make a pipeline's).
//
// It owns reading the source into an immutable plan (plan.go) and sharing that read among
// concurrent promotions of the same source (share.go); the blob sources a destination
// uploads from (source.go: a direct read, or a part of the fan-out that reads each blob
// once for every destination, fanout.go); blob transfer with cross-repository mounts and
// streaming (blob.go); one destination's promotion (copy.go): its manifests, children
// before their index and subjects before their accessories (manifests.go), cosign
// accessories merged with what the destination holds and referrers relisted
// (accessory.go), the tag written or moved last and tag immutability (tag.go); and
// per-host request limits (limit.go). Retries, Retry-After and the cosign tag scheme are
// internal/registry's.
//
// It must not sign or verify anything itself: the signature gate is WithVerify, given by
// the caller. It must not keep state between promotions beyond the per-host limits and the
// reads under way: a promotion interrupted at any point is completed by running it again.
package promote
