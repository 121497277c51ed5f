package merge

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// entry is one child ready to go into an index.
type entry struct {
	ref          string
	platform     types.Platform
	created      time.Time
	image        mutate.IndexAddendum
	attestations []mutate.IndexAddendum
}

// fetchChild reads ch's manifest and config. A child that is itself an index (what BuildKit
// pushes: the image plus an unknown/unknown attestation manifest) is flattened.
func fetchChild(ctx context.Context, c registry.Client, ch Child) (entry, error) {
	ref, err := c.ParseReference(ch.Ref)
	if err != nil {
		return entry{}, err
	}
	desc, err := remote.Get(ref, c.Remote(ctx)...)
	if err != nil {
		if registry.IsNotFound(err) {
			return entry{}, fmt.Errorf("%s: not found in %s", ch.Ref, ref.Context().RegistryStr())
		}
		return entry{}, fmt.Errorf("fetching %s: %w", ch.Ref, err)
	}
	if desc.MediaType.IsIndex() {
		return flatten(ch, desc)
	}
	if !desc.MediaType.IsImage() {
		return entry{}, fmt.Errorf("%s is a %s, not an image or image index", ch.Ref, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return entry{}, fmt.Errorf("reading %s: %w", ch.Ref, err)
	}
	return imageEntry(ch, img, desc.Descriptor)
}

// imageEntry checks img's config platform against the expected one and describes it.
func imageEntry(ch Child, img v1.Image, d v1.Descriptor) (entry, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return entry{}, fmt.Errorf("reading the config of %s: %w", ch.Ref, err)
	}
	actual := types.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if actual.OS == "" || actual.Architecture == "" {
		return entry{}, fmt.Errorf("%w: %s: image config names no os/architecture; push an image built for its platform (crane mutate --set-platform, docker buildx --platform)", ErrPlatform, ch.Ref)
	}
	if ch.Platform != (types.Platform{}) && !ch.Platform.Matches(actual) {
		return entry{}, &PlatformMismatchError{Ref: ch.Ref, Expected: ch.Platform, Actual: actual}
	}
	d.Platform = cf.Platform()
	d.Annotations = nil // annotations of the tag's manifest stay on the manifest
	return entry{
		ref:      ch.Ref,
		platform: actual,
		created:  cf.Created.Time,
		image:    mutate.IndexAddendum{Add: img, Descriptor: d},
	}, nil
}

// flatten picks the platform image out of a child index and keeps the attestation
// manifests that refer to it, with their descriptors unchanged.
func flatten(ch Child, desc *remote.Descriptor) (entry, error) {
	idx, err := desc.ImageIndex()
	if err != nil {
		return entry{}, fmt.Errorf("reading index %s: %w", ch.Ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return entry{}, fmt.Errorf("reading index %s: %w", ch.Ref, err)
	}
	var images []v1.Descriptor
	for _, m := range im.Manifests {
		if !registry.IsAttestation(m) {
			images = append(images, m)
		}
	}
	chosen, err := pickImage(ch, images)
	if err != nil {
		return entry{}, err
	}
	img, err := idx.Image(chosen.Digest)
	if err != nil {
		return entry{}, fmt.Errorf("reading %s@%s: %w", ch.Ref, chosen.Digest, err)
	}
	e, err := imageEntry(ch, img, chosen)
	if err != nil {
		return entry{}, err
	}
	for _, m := range im.Manifests {
		if !registry.IsAttestation(m) || registry.AttestationSubject(m) != chosen.Digest.String() {
			continue
		}
		att, err := idx.Image(m.Digest)
		if err != nil {
			return entry{}, fmt.Errorf("reading attestation %s@%s: %w", ch.Ref, m.Digest, err)
		}
		e.attestations = append(e.attestations, mutate.IndexAddendum{Add: att, Descriptor: m})
	}
	return e, nil
}

// pickImage chooses the image of a child index: the one whose descriptor names the
// expected platform, or the only one there is.
func pickImage(ch Child, images []v1.Descriptor) (v1.Descriptor, error) {
	if len(images) == 1 {
		return images[0], nil
	}
	if len(images) == 0 {
		return v1.Descriptor{}, fmt.Errorf("%s is an index without any image", ch.Ref)
	}
	var names []string
	for _, m := range images {
		if m.Platform == nil {
			names = append(names, "unknown")
			continue
		}
		p := types.Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, Variant: m.Platform.Variant}
		names = append(names, p.String())
		if ch.Platform != (types.Platform{}) && ch.Platform.Matches(p) {
			return m, nil
		}
	}
	if ch.Platform == (types.Platform{}) {
		return v1.Descriptor{}, fmt.Errorf("%s is a multi-platform index (%s): give one image per platform", ch.Ref, strings.Join(names, ", "))
	}
	return v1.Descriptor{}, fmt.Errorf("%w: %s: expected platform %s, but the index holds only %s", ErrPlatform, ch.Ref, ch.Platform, strings.Join(names, ", "))
}

func sortEntries(es []entry) {
	sort.Slice(es, func(i, j int) bool { return es[i].platform.Less(es[j].platform) })
}
