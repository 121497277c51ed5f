package promote

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"

	ptypes "github.com/promoter-dev/promoter/internal/types"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/promoter-dev/promoter/internal/registry"
	"golang.org/x/sync/errgroup"
)

// rawManifest writes the source's bytes unchanged, so digests are identical.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// destination is the state of one promotion target.
type destination struct {
	p      *Promoter
	pl     *plan
	ref    name.Reference
	repo   name.Repository
	puller *remote.Puller
	pusher *remote.Pusher
	blobs  *blobCopier
	opt    Options
	res    *Result

	mu                    sync.Mutex
	blobsDone, blobsTotal int
	bytesDone, bytesTotal int64
}

// copyTo promotes the planned source to dst: check the tag, copy missing blobs, write
// missing manifests in dependency order, then point the tag.
func (p *Promoter) copyTo(ctx context.Context, pl *plan, dst string, opt Options, share *sharing) (*Result, error) {
	ref, err := p.destination(dst, pl.src)
	if err != nil {
		return nil, err
	}
	want := pl.root.digest.String()
	res := &Result{Destination: ref.String(), Digest: want}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != want {
		return res, fmt.Errorf("destination %s names digest %s but the source %s is %s", dst, d.DigestStr(), pl.src, want)
	}
	d, err := p.newDestination(ctx, pl, ref, opt)
	if err != nil {
		return res, fmt.Errorf("promoting to %s: %w", ref, err)
	}
	d.res = res
	d.blobs.share = share
	if err := d.run(ctx); err != nil {
		return res, fmt.Errorf("promoting %s to %s: %w", pl.src, ref, err)
	}
	return res, nil
}

// newDestination prepares the reads and writes of a promotion of pl to ref.
func (p *Promoter) newDestination(ctx context.Context, pl *plan, ref name.Reference, opt Options) (*destination, error) {
	d := &destination{p: p, pl: pl, ref: ref, repo: ref.Context(), opt: opt, res: &Result{Destination: ref.String(), Digest: pl.root.digest.String()}}
	var err error
	if d.puller, err = remote.NewPuller(p.reg.Remote(ctx)...); err != nil {
		return nil, err
	}
	wopts, err := p.reg.Writing(ctx, d.repo)
	if err != nil {
		return nil, err
	}
	if d.pusher, err = remote.NewPusher(wopts...); err != nil {
		return nil, err
	}
	if d.blobs, err = p.newBlobCopier(ctx, pl, d.repo); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *destination) run(ctx context.Context) error {
	tag, byTag := d.ref.(name.Tag)
	tagDone := false
	if byTag {
		same, err := d.checkTag(ctx, tag)
		if err != nil {
			return err
		}
		tagDone = same
	}

	// Which manifests does the destination have? Accessory tags count as present only when
	// they point at the very same digest; existing is what they point at otherwise.
	present := make([]bool, len(d.pl.nodes))
	existing := make([]string, len(d.pl.nodes))
	g, gctx := errgroup.WithContext(ctx)
	for i, n := range d.pl.nodes {
		g.Go(func() error {
			var ref name.Reference = d.repo.Digest(n.digest.String())
			if n.tag != "" {
				ref = d.repo.Tag(n.tag)
			}
			dg, found, err := d.head(gctx, ref)
			if err != nil {
				return err
			}
			present[i] = found && dg == n.digest.String()
			if found {
				existing[i] = dg
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	if err := d.copyBlobs(ctx, present); err != nil {
		return err
	}
	if err := d.writeManifests(ctx, present, existing, byTag); err != nil {
		return err
	}
	if !byTag {
		return nil
	}
	if tagDone {
		d.item(Item{Kind: d.pl.root.kind, Ref: tag.String(), Digest: d.pl.root.digest.String(), Size: d.pl.root.size(), Action: Skip})
		return nil
	}
	if d.opt.DryRun {
		d.item(Item{Kind: d.pl.root.kind, Ref: tag.String(), Digest: d.pl.root.digest.String(), Size: d.pl.root.size(), Action: Tag})
		return nil
	}
	// Check again just before writing: another promoter may have tagged meanwhile.
	if same, err := d.checkTag(ctx, tag); err != nil {
		return err
	} else if !same {
		if err := d.put(ctx, tag, d.pl.root); err != nil {
			return err
		}
	}
	d.item(Item{Kind: d.pl.root.kind, Ref: tag.String(), Digest: d.pl.root.digest.String(), Size: d.pl.root.size(), Action: Tag})
	return nil
}

// checkTag reports whether tag already points at the source digest, and fails with an
// ptypes.TagImmutableError when it points elsewhere and is not mutable.
func (d *destination) checkTag(ctx context.Context, tag name.Tag) (same bool, err error) {
	want := d.pl.root.digest.String()
	got, found, err := d.head(ctx, tag)
	if err != nil {
		return false, err
	}
	switch {
	case !found:
		return false, nil
	case got == want:
		return true, nil
	case slices.Contains(d.opt.MutableTags, tag.TagStr()):
		d.p.log.Info("moving mutable tag", "tag", tag.String(), "from", got, "to", want)
		return false, nil
	default:
		return false, &ptypes.TagImmutableError{Ref: tag.String(), Existing: got, Want: want,
			Remedy: "list the tag in the destination's mutableTags to allow it"}
	}
}

// head returns the digest ref points at in the destination, found=false on 404.
func (d *destination) head(ctx context.Context, ref name.Reference) (digest string, found bool, err error) {
	release, err := d.p.acquire(ctx, d.repo.RegistryStr())
	if err != nil {
		return "", false, err
	}
	defer release()
	desc, err := d.puller.Head(ctx, ref)
	if registry.IsStatus(err, http.StatusNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("checking %s: %w", ref, err)
	}
	return desc.Digest.String(), true, nil
}

// copyBlobs copies, once each, the blobs of every manifest the destination lacks, in
// parallel within the per-host limits. Blobs of present manifests are counted as skipped:
// a registry holds a manifest only with its blobs.
func (d *destination) copyBlobs(ctx context.Context, present []bool) error {
	seen := map[v1.Hash]bool{}
	var todo []v1.Descriptor
	for i, n := range d.pl.nodes {
		if present[i] {
			continue
		}
		for _, b := range n.blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				todo = append(todo, b)
				d.bytesTotal += b.Size
			}
		}
	}
	d.blobsTotal = len(todo)
	d.blobs.share.expect(todo)
	for i, n := range d.pl.nodes {
		if !present[i] {
			continue
		}
		for _, b := range n.blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				d.res.Skipped += b.Size
			}
		}
	}

	items := make([]Item, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	for i, b := range todo {
		g.Go(func() error {
			var action Action
			var err error
			if d.opt.DryRun {
				action, err = d.predict(gctx, b)
			} else {
				action, err = d.blobs.copy(gctx, b)
			}
			if err != nil {
				return err
			}
			items[i] = Item{Kind: KindBlob, Ref: d.repo.Digest(b.Digest.String()).String(), Digest: b.Digest.String(), Size: b.Size, Action: action}
			d.blobDone(items[i])
			return nil
		})
	}
	err := g.Wait()
	for _, it := range items {
		if it.Action != "" {
			d.res.Items = append(d.res.Items, it)
		}
	}
	return err
}

// predict is the dry-run of blobCopier.copy: HEAD only.
func (d *destination) predict(ctx context.Context, b v1.Descriptor) (Action, error) {
	ok, err := d.blobs.exists(ctx, b.Digest)
	switch {
	case err != nil:
		return "", fmt.Errorf("checking blob %s in %s: %w", b.Digest, d.repo, err)
	case ok:
		return Skip, nil
	case d.blobs.mount && d.blobs.src.String() != d.repo.String():
		return Mount, nil
	default:
		return Copy, nil
	}
}

func (d *destination) blobDone(it Item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch it.Action {
	case Copy:
		d.res.Uploaded += it.Size
	case Mount:
		d.res.Mounted += it.Size
	case Skip:
		d.res.Skipped += it.Size
	}
	d.blobsDone++
	d.bytesDone += it.Size
	d.p.log.Debug("blob", "destination", d.repo.String(), "digest", it.Digest, "size", it.Size, "action", string(it.Action))
	if d.opt.Progress != nil {
		d.opt.Progress(Event{Destination: d.res.Destination, Item: it,
			BlobsDone: d.blobsDone, BlobsTotal: d.blobsTotal, BytesDone: d.bytesDone, BytesTotal: d.bytesTotal})
	}
}

// item records a manifest-level item.
func (d *destination) item(it Item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.res.Items = append(d.res.Items, it)
	if it.Action != Skip {
		d.p.log.Debug("manifest", "kind", string(it.Kind), "ref", it.Ref, "digest", it.Digest, "action", string(it.Action), "dry_run", d.opt.DryRun)
	}
	if d.opt.Progress != nil {
		d.opt.Progress(Event{Destination: d.res.Destination, Item: it,
			BlobsDone: d.blobsDone, BlobsTotal: d.blobsTotal, BytesDone: d.bytesDone, BytesTotal: d.bytesTotal})
	}
}

// writeManifests writes the missing manifests, every one after the manifests it references
// (children before their index, subjects before their accessories). The root is left to
// the final tag write when promoting by tag, so that the tag is the last thing to appear.
// Manifests that do not depend on each other are written at once, wave after wave, except
// the referrers of one subject: a registry without the referrers API keeps them in one
// fallback tag that each write reads and rewrites, so those go one after another.
func (d *destination) writeManifests(ctx context.Context, present []bool, existing []string, byTag bool) error {
	items := make([]Item, len(d.pl.nodes))
	for _, wave := range waves(d.pl.nodes) {
		// Each lane is written in order; lanes run at once.
		lanes := map[string][]int{}
		var keys []string
		for _, i := range wave {
			key := fmt.Sprint(i)
			if n := d.pl.nodes[i]; n.subject != nil {
				key = "referrers of " + n.subject.Digest.String()
			}
			if _, ok := lanes[key]; !ok {
				keys = append(keys, key)
			}
			lanes[key] = append(lanes[key], i)
		}
		g, gctx := errgroup.WithContext(ctx)
		for _, key := range keys {
			g.Go(func() error {
				for _, i := range lanes[key] {
					if byTag && d.pl.nodes[i] == d.pl.root {
						continue // written by the tag, last
					}
					it, err := d.writeManifest(gctx, d.pl.nodes[i], present[i], existing[i])
					if err != nil {
						return err
					}
					items[i] = it
				}
				return nil
			})
		}
		err := g.Wait()
		for _, i := range wave {
			if items[i].Action != "" {
				d.item(items[i])
			}
		}
		if err != nil {
			return err
		}
	}
	var referrers []*node // present ones, whose listing must still be checked
	for i, n := range d.pl.nodes {
		if present[i] && n.subject != nil && !(byTag && n == d.pl.root) {
			referrers = append(referrers, n)
		}
	}
	return d.relist(ctx, referrers)
}

// writeManifest writes one manifest the destination lacks (or merges an accessory tag that
// holds another digest) and says what it did.
func (d *destination) writeManifest(ctx context.Context, n *node, present bool, existing string) (Item, error) {
	ref := d.target(n)
	it := Item{Kind: n.kind, Ref: ref.String(), Digest: n.digest.String(), Size: n.size(), Action: Copy}
	switch {
	case present:
		it.Action = Skip
	case n.tag != "" && existing != "":
		action, err := d.mergeAccessory(ctx, n, existing)
		if err != nil {
			return it, err
		}
		it.Action = action
	case d.opt.DryRun:
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

// target is where a node is written: its cosign tag, or its digest.
func (d *destination) target(n *node) name.Reference {
	if n.tag != "" {
		return d.repo.Tag(n.tag)
	}
	return d.repo.Digest(n.digest.String())
}

func (d *destination) put(ctx context.Context, ref name.Reference, n *node) error {
	release, err := d.p.acquire(ctx, d.repo.RegistryStr())
	if err != nil {
		return err
	}
	defer release()
	if err := d.pusher.Put(ctx, ref, rawManifest{raw: n.raw, mt: n.mt}); err != nil {
		return fmt.Errorf("writing %s %s: %w", n.kind, ref, err)
	}
	return nil
}

// mergeAccessory handles a cosign tag (sha256-<hex>.sig, .att, .sbom) that exists in the
// destination with another digest, typically because the destination was signed
// separately. Signatures are never dropped: a destination already holding every source
// layer is left alone, one holding a subset is replaced by the source, and otherwise the
// destination's layers are kept and the source's missing ones appended, as cosign itself
// appends a new signature.
func (d *destination) mergeAccessory(ctx context.Context, n *node, existing string) (Action, error) {
	ref := d.repo.Tag(n.tag)
	release, err := d.p.acquire(ctx, d.repo.RegistryStr())
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
	contains := func(ls []v1.Descriptor, h v1.Hash) bool {
		return slices.ContainsFunc(ls, func(l v1.Descriptor) bool { return l.Digest == h })
	}
	var missing []v1.Descriptor
	for _, l := range want.Layers {
		if !contains(have.Layers, l.Digest) {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return Skip, nil
	}
	subset := true
	for _, l := range have.Layers {
		subset = subset && contains(want.Layers, l.Digest)
	}
	if subset {
		if !d.opt.DryRun {
			if err := d.put(ctx, ref, n); err != nil {
				return "", err
			}
		}
		return Copy, nil
	}
	merged := want
	merged.Layers = append(slices.Clone(have.Layers), missing...)
	raw, err := json.Marshal(merged)
	if err != nil {
		return "", err
	}
	if !d.opt.DryRun {
		mt := n.mt
		if merged.MediaType != "" {
			mt = merged.MediaType
		}
		if err := d.put(ctx, ref, &node{kind: n.kind, raw: raw, mt: mt}); err != nil {
			return "", err
		}
	}
	return Merge, nil
}

// relist makes sure referrers that were already present are listed in the destination's
// referrers of their subject: an earlier promotion may have stopped between writing a
// referrer and updating the fallback tag. Writing the referrer again fixes the listing.
func (d *destination) relist(ctx context.Context, referrers []*node) error {
	listed := map[v1.Hash]map[v1.Hash]bool{}
	for _, n := range referrers {
		sub := n.subject.Digest
		if listed[sub] == nil {
			release, err := d.p.acquire(ctx, d.repo.RegistryStr())
			if err != nil {
				return err
			}
			idx, err := d.p.reg.Referrers(d.repo.Digest(sub.String()), remote.Reuse(d.puller), remote.WithContext(ctx))
			release()
			if err != nil {
				return fmt.Errorf("listing referrers of %s in %s: %w", sub, d.repo, err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				return fmt.Errorf("listing referrers of %s in %s: %w", sub, d.repo, err)
			}
			listed[sub] = map[v1.Hash]bool{}
			for _, m := range im.Manifests {
				listed[sub][m.Digest] = true
			}
		}
		if listed[sub][n.digest] {
			continue
		}
		ref := d.repo.Digest(n.digest.String())
		if !d.opt.DryRun {
			if err := d.put(ctx, ref, n); err != nil {
				return err
			}
		}
		d.item(Item{Kind: n.kind, Ref: ref.String(), Digest: n.digest.String(), Size: n.size(), Action: Copy})
	}
	return nil
}
