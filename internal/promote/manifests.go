package promote

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// writeManifests writes the missing manifests, every one after the manifests it references
// (children before their index, subjects before their accessories): wave after wave
// (waves), the manifests of a wave at once. The root is left to the final tag write when
// promoting by tag, so that the tag is the last thing to appear. Last, the referrers that
// were present already are checked to be listed (relist).
func (d *destination) writeManifests(ctx context.Context, have []found, byTag bool) error {
	for _, wave := range waves(d.pl.nodes) {
		if err := d.writeWave(ctx, wave, have, byTag); err != nil {
			return err
		}
	}
	var present []*node // referrers whose listing must still be checked
	for i, n := range d.pl.nodes {
		if have[i].present && n.subject != nil && !(byTag && n == d.pl.root) {
			present = append(present, n)
		}
	}
	return d.relist(ctx, present)
}

// writeWave writes the manifests of one wave, its lanes at once and each lane in order,
// and records what it did in the wave's order.
func (d *destination) writeWave(ctx context.Context, wave []int, have []found, byTag bool) error {
	items := make(map[int]Item, len(wave))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, lane := range lanes(d.pl.nodes, wave) {
		g.Go(func() error {
			for _, i := range lane {
				n := d.pl.nodes[i]
				if byTag && n == d.pl.root {
					continue // written by the tag, last
				}
				it, err := d.writeManifest(gctx, n, have[i])
				if err != nil {
					return err
				}
				mu.Lock()
				items[i] = it
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	for _, i := range wave {
		if it, ok := items[i]; ok {
			d.item(it)
		}
	}
	return err
}

// lanes splits a wave into the sequences written one after another. The referrers of one
// subject share a lane: a registry without the referrers API keeps them in one fallback
// tag that each write reads and rewrites, so those go one after another. Every other
// manifest is a lane of its own.
func lanes(nodes []*node, wave []int) [][]int {
	var out [][]int
	bySubject := map[v1.Hash]int{} // subject -> its referrers' lane in out
	for _, i := range wave {
		s := nodes[i].subject
		if s == nil {
			out = append(out, []int{i})
			continue
		}
		if l, ok := bySubject[s.Digest]; ok {
			out[l] = append(out[l], i)
			continue
		}
		bySubject[s.Digest] = len(out)
		out = append(out, []int{i})
	}
	return out
}

// writeManifest writes one manifest the destination lacks (or merges an accessory tag that
// holds another digest) and says what it did.
func (d *destination) writeManifest(ctx context.Context, n *node, f found) (Item, error) {
	ref := d.where(n)
	it := Item{Kind: n.kind, Ref: ref.String(), Digest: n.digest.String(), Size: n.size(), Action: Copy}
	switch {
	case f.present:
		it.Action = Skip
	case n.tag != "" && f.existing != "":
		action, err := d.mergeAccessory(ctx, n, f.existing)
		if err != nil {
			return it, err
		}
		it.Action = action
	case d.dryRun:
	default:
		if err := d.put(ctx, ref, n); err != nil {
			return it, err
		}
	}
	return it, nil
}

// waves groups the plan's nodes (indexes into nodes, which is in write order) so that
// every node comes in a later wave than each node it references: an index's children, a
// referrer's subject, the manifest a cosign accessory tag is attached to.
func waves(nodes []*node) [][]int {
	level := map[v1.Hash]int{}
	var out [][]int
	for i, n := range nodes {
		l := 0
		deps := slices.Clone(n.children)
		if n.subject != nil {
			deps = append(deps, *n.subject)
		}
		for _, dep := range deps {
			if dl, ok := level[dep.Digest]; ok {
				l = max(l, dl+1)
			}
		}
		if dl, ok := level[n.accessoryOf]; ok && n.tag != "" {
			l = max(l, dl+1)
		}
		if cur, ok := level[n.digest]; ok {
			l = max(l, cur) // the same manifest again (under a tag): not before its first
		}
		level[n.digest] = l
		for len(out) <= l {
			out = append(out, nil)
		}
		out[l] = append(out[l], i)
	}
	return out
}

// where is where a node is written: its cosign tag, or its digest.
func (d *destination) where(n *node) name.Reference {
	if n.tag != "" {
		return d.repo.Tag(n.tag)
	}
	return d.repo.Digest(n.digest.String())
}

func (d *destination) put(ctx context.Context, ref name.Reference, n *node) error {
	release, err := d.p.limits.acquire(ctx, d.repo.RegistryStr())
	if err != nil {
		return err
	}
	defer release()
	if err := d.pusher.Put(ctx, ref, rawManifest{raw: n.raw, mt: n.mt}); err != nil {
		return fmt.Errorf("writing %s %s: %w", n.kind, ref, err)
	}
	return nil
}
