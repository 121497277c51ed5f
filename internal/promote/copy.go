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
	target Target
	ref    name.Reference
	repo   name.Repository
	puller *remote.Puller
	pusher *remote.Pusher
	blobs  *blobCopier
	dryRun bool
	res    *Result

	mu                    sync.Mutex
	blobsDone, blobsTotal int
	bytesDone, bytesTotal int64
}

// found is what the destination holds where a planned manifest goes.
type found struct {
	// present: the very same digest. Accessory tags count as present only when they point
	// at it.
	present bool
	// existing is the digest there, "" when there is none.
	existing string
}

// copyTo promotes the planned source to target i: check the tag, copy missing blobs,
// write missing manifests in dependency order, point the tag, then move the target's
// other tags.
func (p *Promoter) copyTo(ctx context.Context, pl *plan, t Target, srcs sources, i int) (*Result, error) {
	ref, err := p.destination(t.Ref, pl.src)
	if err != nil {
		srcs.part(i, "").Done()
		return nil, err
	}
	source := srcs.part(i, ref.Context().RegistryStr())
	defer source.Done()
	want := pl.root.digest.String()
	res := &Result{Destination: ref.String(), Digest: want}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != want {
		return res, fmt.Errorf("destination %s names digest %s but the source %s is %s", t.Ref, d.DigestStr(), pl.src, want)
	}
	d, err := p.newDestination(ctx, pl, t, ref, source, res)
	if err != nil {
		return res, fmt.Errorf("promoting to %s: %w", ref, err)
	}
	if err := d.run(ctx); err != nil {
		return res, fmt.Errorf("promoting %s to %s: %w", pl.src, ref, err)
	}
	return res, nil
}

// newDestination prepares the reads and writes of a promotion of pl to ref, recording in
// res.
func (p *Promoter) newDestination(ctx context.Context, pl *plan, t Target, ref name.Reference, source blobSource, res *Result) (*destination, error) {
	d := &destination{p: p, pl: pl, target: t, ref: ref, repo: ref.Context(), dryRun: p.dryRun, res: res}
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
	if d.blobs, err = p.newBlobCopier(ctx, pl.src.Context(), d.repo, source); err != nil {
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
	have, err := d.survey(ctx)
	if err != nil {
		return err
	}
	if err := d.copyBlobs(ctx, have); err != nil {
		return err
	}
	if err := d.writeManifests(ctx, have, byTag); err != nil {
		return err
	}
	if byTag {
		if err := d.writeTag(ctx, tag, tagDone); err != nil {
			return err
		}
	}
	for _, t := range d.target.Tags {
		if err := d.moveTag(ctx, d.repo.Tag(t)); err != nil {
			return err
		}
	}
	return nil
}

// survey asks the destination, at once, what it holds where each planned manifest goes.
func (d *destination) survey(ctx context.Context) ([]found, error) {
	have := make([]found, len(d.pl.nodes))
	g, gctx := errgroup.WithContext(ctx)
	for i, n := range d.pl.nodes {
		g.Go(func() error {
			dg, ok, err := d.head(gctx, d.where(n))
			if err != nil {
				return err
			}
			if ok {
				have[i] = found{present: dg == n.digest.String(), existing: dg}
			}
			return nil
		})
	}
	return have, g.Wait()
}

// writeTag points tag at the root, the last write of a promotion by tag, unless it
// pointed there already (tagDone).
func (d *destination) writeTag(ctx context.Context, tag name.Tag, tagDone bool) error {
	it := d.rootItem(tag, Tag)
	switch {
	case tagDone:
		it.Action = Skip
	case d.dryRun:
	default:
		// Check again just before writing: another promoter may have tagged meanwhile.
		same, err := d.checkTag(ctx, tag)
		if err != nil {
			return err
		}
		if !same {
			if err := d.put(ctx, tag, d.pl.root); err != nil {
				return err
			}
		}
	}
	d.item(it)
	return nil
}

// moveTag points one more tag at the root, which the destination holds by now: one
// manifest write, or none when it points there already. A tag that is not mutable and
// points elsewhere is a types.TagImmutableError.
func (d *destination) moveTag(ctx context.Context, tag name.Tag) error {
	same, err := d.checkTag(ctx, tag)
	if err != nil {
		return fmt.Errorf("moving %s: %w", tag, err)
	}
	it := d.rootItem(tag, Tag)
	switch {
	case same:
		it.Action = Skip
	case d.dryRun:
	default:
		if err := d.put(ctx, tag, d.pl.root); err != nil {
			return fmt.Errorf("moving %s: %w", tag, err)
		}
	}
	d.item(it)
	return nil
}

// rootItem is the item of the root under tag.
func (d *destination) rootItem(tag name.Tag, action Action) Item {
	root := d.pl.root
	return Item{Kind: root.kind, Ref: tag.String(), Digest: root.digest.String(), Size: root.size(), Action: action}
}

// checkTag reports whether tag already points at the source digest, and fails with an
// ptypes.TagImmutableError when it points elsewhere and is not mutable.
func (d *destination) checkTag(ctx context.Context, tag name.Tag) (same bool, err error) {
	want := d.pl.root.digest.String()
	got, ok, err := d.head(ctx, tag)
	if err != nil {
		return false, err
	}
	switch {
	case !ok:
		return false, nil
	case got == want:
		return true, nil
	case slices.Contains(d.target.MutableTags, tag.TagStr()):
		d.p.log.Info("moving mutable tag", "tag", tag.String(), "from", got, "to", want)
		return false, nil
	default:
		return false, &ptypes.TagImmutableError{Ref: tag.String(), Existing: got, Want: want,
			Remedy: "list the tag in the destination's mutableTags to allow it"}
	}
}

// head returns the digest ref points at in the destination, found=false on 404.
func (d *destination) head(ctx context.Context, ref name.Reference) (digest string, ok bool, err error) {
	release, err := d.p.limits.acquire(ctx, d.repo.RegistryStr())
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
func (d *destination) copyBlobs(ctx context.Context, have []found) error {
	todo := d.blobsToCopy(have)
	d.blobs.source.Expect(todo)
	items := make([]Item, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	for i, b := range todo {
		g.Go(func() error {
			copyBlob := d.blobs.copy
			if d.dryRun {
				copyBlob = d.blobs.predict
			}
			action, err := copyBlob(gctx, b)
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

// blobsToCopy lists, once each, the blobs of the manifests the destination lacks, and
// counts the totals and the skipped bytes (the blobs of present manifests alone).
func (d *destination) blobsToCopy(have []found) []v1.Descriptor {
	seen := map[v1.Hash]bool{}
	var todo []v1.Descriptor
	for i, n := range d.pl.nodes {
		if have[i].present {
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
	for i, n := range d.pl.nodes {
		if !have[i].present {
			continue
		}
		for _, b := range n.blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				d.res.Skipped += b.Size
			}
		}
	}
	return todo
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
	if d.p.progress != nil {
		d.p.progress(Event{Destination: d.res.Destination, Item: it,
			BlobsDone: d.blobsDone, BlobsTotal: d.blobsTotal, BytesDone: d.bytesDone, BytesTotal: d.bytesTotal})
	}
}

// item records a manifest-level item.
func (d *destination) item(it Item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.res.Items = append(d.res.Items, it)
	if it.Action != Skip {
		d.p.log.Debug("manifest", "kind", string(it.Kind), "ref", it.Ref, "digest", it.Digest, "action", string(it.Action), "dry_run", d.dryRun)
	}
	if d.p.progress != nil {
		d.p.progress(Event{Destination: d.res.Destination, Item: it,
			BlobsDone: d.blobsDone, BlobsTotal: d.blobsTotal, BytesDone: d.bytesDone, BytesTotal: d.bytesTotal})
	}
}

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
