package promote

import (
	"context"
	"fmt"
	"net/http"
	"sync"

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
