package selfimage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/promoter-dev/promoter/internal/types"
)

// Target is where and how Push writes a release.
type Target struct {
	// Repo is the repository, e.g. a staging repository a promoter pipeline watches.
	Repo name.Repository
	// Tag is the revision: each platform's arch tag is rendered from it with the default
	// arch tag pattern ({revision}-{arch}), and the index, if pushed, is tagged with it.
	Tag string
	// ArchTags tags each platform image with its arch tag after pushing it (and its SBOM)
	// by digest. Without it the images are pushed by digest only, for a CI job that signs
	// each digest before it tags (see TagArchImages).
	ArchTags bool
	// Index also pushes the multi-arch index under Tag, for users without a promoter.
	Index bool
}

// Pushed is what Push wrote.
type Pushed struct {
	Repo     string        `json:"repository"`
	Revision string        `json:"revision"`
	Images   []PushedImage `json:"images"`
	// Index is the index's digest when Target.Index was set.
	Index     string `json:"index,omitempty"`
	IndexSize int64  `json:"indexSize,omitempty"`
}

// PushedImage is one platform's image as pushed.
type PushedImage struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	// ArchTag is the tag the image has or gets (Target.ArchTags).
	ArchTag string `json:"archTag"`
	// Size is the bytes a pull transfers: manifest, config and compressed layers.
	Size int64 `json:"size"`
	// SBOM is the digest of the SBOM referrer of the image.
	SBOM string `json:"sbom"`
}

// WithRemote sets the go-containerregistry options of every registry call (credentials,
// transport). The default uses the docker config's credentials (authn.DefaultKeychain).
func WithRemote(ro ...remote.Option) Option {
	return func(o *options) error {
		o.remote = append(o.remote, ro...)
		return nil
	}
}

// Push writes each platform image by digest, then its SBOM as a referrer of that digest,
// then (Target.ArchTags) its arch tag; finally (Target.Index) the index under Target.Tag.
// Everything is written by digest before any tag names it, and writing again is a no-op.
func Push(ctx context.Context, rel *Release, tgt Target, opts ...Option) (*Pushed, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if tgt.Tag == "" {
		return nil, fmt.Errorf("pushing to %s: no tag", tgt.Repo)
	}
	ro := o.remoteOptions(ctx)
	out := &Pushed{Repo: tgt.Repo.String(), Revision: rel.Revision}
	for _, img := range rel.Images {
		start := time.Now()
		d, err := img.Image.Digest()
		if err != nil {
			return nil, err
		}
		ref := tgt.Repo.Digest(d.String())
		if err := remote.Write(ref, img.Image, ro...); err != nil {
			return nil, fmt.Errorf("pushing %s: %w", ref, err)
		}
		desc, err := partial.Descriptor(img.Image)
		if err != nil {
			return nil, err
		}
		sbom, err := newSBOMReferrer(img.SBOM, *desc, rel.Created)
		if err != nil {
			return nil, err
		}
		sd, err := sbom.Digest()
		if err != nil {
			return nil, err
		}
		if err := remote.Write(tgt.Repo.Digest(sd.String()), sbom, ro...); err != nil {
			return nil, fmt.Errorf("pushing the SBOM of %s: %w", ref, err)
		}
		size, err := pullSize(img.Image)
		if err != nil {
			return nil, err
		}
		p := PushedImage{
			Platform: img.Platform.String(),
			Digest:   d.String(),
			ArchTag:  ArchTag(tgt.Tag, img.Platform),
			Size:     size,
			SBOM:     sd.String(),
		}
		out.Images = append(out.Images, p)
		o.log.Info("pushed", "ref", ref.String(), "sbom", p.SBOM, "bytes", size, "seconds", time.Since(start).Seconds())
	}
	if tgt.ArchTags {
		if err := TagArchImages(ctx, tgt.Repo, out.Images, opts...); err != nil {
			return nil, err
		}
	}
	if tgt.Index {
		idx, err := rel.Index()
		if err != nil {
			return nil, err
		}
		ref := tgt.Repo.Tag(tgt.Tag)
		if err := remote.WriteIndex(ref, idx, ro...); err != nil {
			return nil, fmt.Errorf("pushing the index %s: %w", ref, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		if out.IndexSize, err = idx.Size(); err != nil {
			return nil, err
		}
		out.Index = d.String()
		o.log.Info("pushed", "ref", ref.String(), "digest", out.Index)
	}
	return out, nil
}

// TagArchImages tags each image, already in repo by digest, with its arch tag: the last
// step of a CI job that pushed by digest (Target.ArchTags false) and signed each digest.
func TagArchImages(ctx context.Context, repo name.Repository, images []PushedImage, opts ...Option) error {
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	ro := o.remoteOptions(ctx)
	for _, p := range images {
		src := repo.Digest(p.Digest)
		desc, err := remote.Get(src, ro...)
		if err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
		tag := repo.Tag(p.ArchTag)
		if err := remote.Tag(tag, desc, ro...); err != nil {
			return fmt.Errorf("tagging %s as %s: %w", src, tag, err)
		}
		o.log.Info("tagged", "ref", tag.String(), "digest", p.Digest)
	}
	return nil
}

// ArchTag is the tag a merge-only promoter pipeline takes for platform p of revision rev:
// the default pattern, {revision}-{arch}.
func ArchTag(rev string, p types.Platform) string {
	return types.ArchTag(types.DefaultArchTag).Render(rev, p)
}

// Index is the multi-arch index of the release, children in platform order, with the same
// annotations as each image.
func (r *Release) Index() (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, ggcrtypes.OCIImageIndex)
	for _, img := range r.Images {
		p := v1.Platform{OS: img.Platform.OS, Architecture: img.Platform.Architecture, Variant: img.Platform.Variant}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img.Image, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.Annotations(idx, r.labels()).(v1.ImageIndex), nil
}

// pullSize is what pulling img transfers: manifest, config and compressed layers.
func pullSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

func (o options) remoteOptions(ctx context.Context) []remote.Option {
	ro := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	return append(ro, o.remote...)
}
