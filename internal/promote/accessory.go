package promote

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// mergeAccessory handles a cosign tag (sha256-<hex>.sig, .att, .sbom) that exists in the
// destination with another digest, typically because the destination was signed
// separately. Signatures are never dropped: a destination already holding every source
// layer is left alone, one holding a subset is replaced by the source, and otherwise the
// destination's layers are kept and the source's missing ones appended, as cosign itself
// appends a new signature.
func (d *destination) mergeAccessory(ctx context.Context, n *node, existing string) (Action, error) {
	ref := d.repo.Tag(n.tag)
	release, err := d.p.limits.acquire(ctx, d.repo.RegistryStr())
	if err != nil {
		return "", err
	}
	desc, err := d.puller.Get(ctx, ref)
	release()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", ref, err)
	}
	var have, want v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &have); err != nil {
		return "", fmt.Errorf("decoding %s (%s): %w", ref, existing, err)
	}
	if err := json.Unmarshal(n.raw, &want); err != nil {
		return "", fmt.Errorf("decoding source %s: %w", n.tag, err)
	}
	layers, action := mergeLayers(have.Layers, want.Layers)
	if action == Skip || d.dryRun {
		return action, nil
	}
	if action == Copy {
		return Copy, d.put(ctx, ref, n)
	}
	merged := want
	merged.Layers = layers
	raw, err := json.Marshal(merged)
	if err != nil {
		return "", err
	}
	mt := n.mt
	if merged.MediaType != "" {
		mt = merged.MediaType
	}
	return Merge, d.put(ctx, ref, &node{kind: n.kind, raw: raw, mt: mt})
}

// mergeLayers decides how an accessory's source layers (want) join the destination's
// (have): Skip when have holds them all, Copy (the source replaces the destination) when
// have holds nothing else, else Merge, with have's layers followed by the missing ones.
func mergeLayers(have, want []v1.Descriptor) ([]v1.Descriptor, Action) {
	contains := func(ls []v1.Descriptor, h v1.Hash) bool {
		return slices.ContainsFunc(ls, func(l v1.Descriptor) bool { return l.Digest == h })
	}
	var missing []v1.Descriptor
	for _, l := range want {
		if !contains(have, l.Digest) {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return nil, Skip
	}
	if !slices.ContainsFunc(have, func(l v1.Descriptor) bool { return !contains(want, l.Digest) }) {
		return nil, Copy
	}
	return append(slices.Clone(have), missing...), Merge
}

// relist makes sure referrers that were already present are listed in the destination's
// referrers of their subject: an earlier promotion may have stopped between writing a
// referrer and updating the fallback tag. Writing the referrer again fixes the listing.
func (d *destination) relist(ctx context.Context, referrers []*node) error {
	listed := map[v1.Hash]map[v1.Hash]bool{}
	for _, n := range referrers {
		sub := n.subject.Digest
		if listed[sub] == nil {
			var err error
			if listed[sub], err = d.referrersOf(ctx, sub); err != nil {
				return err
			}
		}
		if listed[sub][n.digest] {
			continue
		}
		ref := d.repo.Digest(n.digest.String())
		if !d.dryRun {
			if err := d.put(ctx, ref, n); err != nil {
				return err
			}
		}
		d.item(Item{Kind: n.kind, Ref: ref.String(), Digest: n.digest.String(), Size: n.size(), Action: Copy})
	}
	return nil
}

// referrersOf lists the digests the destination lists as referrers of sub.
func (d *destination) referrersOf(ctx context.Context, sub v1.Hash) (map[v1.Hash]bool, error) {
	release, err := d.p.limits.acquire(ctx, d.repo.RegistryStr())
	if err != nil {
		return nil, err
	}
	idx, err := d.p.reg.Referrers(d.repo.Digest(sub.String()), remote.Reuse(d.puller), remote.WithContext(ctx))
	release()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s in %s: %w", sub, d.repo, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s in %s: %w", sub, d.repo, err)
	}
	listed := map[v1.Hash]bool{}
	for _, m := range im.Manifests {
		listed[m.Digest] = true
	}
	return listed, nil
}
