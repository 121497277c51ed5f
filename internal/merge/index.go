package merge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// Annotation keys written on every index.
const (
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationSource   = "org.opencontainers.image.source"
	AnnotationCreated  = "org.opencontainers.image.created"
)

var (
	// ErrPlatform is wrapped by PlatformMismatchError.
	ErrPlatform = errors.New("platform mismatch")
)

// PlatformMismatchError says a child image is not the platform its tag claims.
type PlatformMismatchError struct {
	Ref      string
	Expected types.Platform
	Actual   types.Platform
}

func (e *PlatformMismatchError) Error() string {
	return fmt.Sprintf("%s: expected platform %s, but its image config says %s; push the %s image under this tag",
		e.Ref, e.Expected, e.Actual, e.Expected)
}

func (e *PlatformMismatchError) Unwrap() error { return ErrPlatform }

// Child is one image to merge. Platform, when set, is what its config must say; when zero,
// the platform is read from the config (the CLI's REF arguments).
type Child struct {
	Ref      string
	Platform types.Platform
}

// Request describes one index.
type Request struct {
	// Target is the tag the index is pushed to.
	Target   string
	Children []Child
	// Revision and Source become annotations; Source is omitted when empty.
	Revision string
	Source   string
}

// ChildResult is one platform image that went into the index.
type ChildResult struct {
	Ref      string         `json:"ref"`
	Platform types.Platform `json:"platform"`
	Digest   string         `json:"digest"`
	// Attestations are BuildKit attestation manifests kept next to the image.
	Attestations []string `json:"attestations,omitempty"`
}

// Result is a built index.
type Result struct {
	Index    v1.ImageIndex
	Digest   string
	Manifest []byte
	Children []ChildResult
}

// Outcome of Push.
type Outcome string

// Push outcomes.
const (
	Pushed Outcome = "merged" // the index was written
	Exists Outcome = "exists" // the target already held this exact index
)

// Build fetches every child, checks its platform and assembles the index without writing
// anything. The same children always give the same digest: children are ordered by
// platform, and created is the latest child's config created time, not the clock.
func Build(ctx context.Context, c registry.Client, req Request) (*Result, error) {
	if len(req.Children) == 0 {
		return nil, errors.New("nothing to merge: give at least one image")
	}
	// The children are read at once: each is a manifest and a config, small round trips
	// that would otherwise add up one after another.
	entries := make([]entry, len(req.Children))
	// Not errgroup.WithContext: the entries read their blobs later, under ctx, and its
	// context ends when Wait returns.
	var g errgroup.Group
	for i, ch := range req.Children {
		g.Go(func() error {
			e, err := fetchChild(ctx, c, ch)
			entries[i] = e
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var (
		seen    = map[string]string{}
		created time.Time
	)
	for i, e := range entries {
		key := e.platform.String()
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s and %s are both %s: an index holds one image per platform", prev, req.Children[i].Ref, key)
		}
		seen[key] = req.Children[i].Ref
		if e.created.After(created) {
			created = e.created
		}
	}
	sortEntries(entries)

	// Images first, in platform order, then their attestations in the same order: the
	// layout BuildKit itself pushes.
	var adds []mutate.IndexAddendum
	for _, e := range entries {
		adds = append(adds, e.image)
	}
	for _, e := range entries {
		adds = append(adds, e.attestations...)
	}
	ann := map[string]string{AnnotationRevision: req.Revision}
	if req.Revision == "" {
		delete(ann, AnnotationRevision)
	}
	if req.Source != "" {
		ann[AnnotationSource] = req.Source
	}
	if !created.IsZero() {
		ann[AnnotationCreated] = created.UTC().Format(time.RFC3339)
	}
	idx := mutate.IndexMediaType(empty.Index, ggcrtypes.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	idx = mutate.Annotations(idx, ann).(v1.ImageIndex)

	raw, err := idx.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("serialising index: %w", err)
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("digesting index: %w", err)
	}
	res := &Result{Index: idx, Digest: d.String(), Manifest: raw}
	for _, e := range entries {
		cr := ChildResult{Ref: e.ref, Platform: e.platform, Digest: e.image.Descriptor.Digest.String()}
		for _, a := range e.attestations {
			cr.Attestations = append(cr.Attestations, a.Descriptor.Digest.String())
		}
		res.Children = append(res.Children, cr)
	}
	return res, nil
}

// Push writes the index to target unless the tag already exists. A tag that holds the same
// digest is left as is (Exists); one that holds another digest is a types.TagImmutableError.
func Push(ctx context.Context, c registry.Client, target string, res *Result) (Outcome, error) {
	ref, err := c.ParseReference(target)
	if err != nil {
		return "", err
	}
	if _, ok := ref.(name.Tag); !ok {
		return "", fmt.Errorf("target %q must be a tag (REGISTRY/REPO:TAG)", target)
	}
	existing, err := remote.Head(ref, c.Remote(ctx)...)
	switch {
	case err == nil && existing.Digest.String() == res.Digest:
		return Exists, nil
	case err == nil:
		return "", &types.TagImmutableError{Ref: target, Existing: existing.Digest.String(), Want: res.Digest,
			Remedy: "it was left untouched (delete the tag or use a new revision)"}
	case !registry.IsNotFound(err):
		return "", fmt.Errorf("checking %s: %w", target, err)
	}
	if err := write(ctx, c, ref, res); err != nil {
		return "", fmt.Errorf("pushing index to %s: %w", target, err)
	}
	return Pushed, nil
}

// write puts res's index under ref. When every child is in ref's repository (the daemon's
// case: the arch tags are in the staging repository the index goes to) that is one PUT:
// the registry itself refuses an index whose children it lacks. Otherwise WriteIndex
// copies the children first, mounting from their repositories on the same registry.
func write(ctx context.Context, c registry.Client, ref name.Reference, res *Result) error {
	local := true
	for _, ch := range res.Children {
		r, err := c.ParseReference(ch.Ref)
		if err != nil || r.Context().String() != ref.Context().String() {
			local = false
			break
		}
	}
	if !local {
		return remote.WriteIndex(ref, res.Index, c.Remote(ctx)...)
	}
	opts, err := c.Writing(ctx, ref.Context())
	if err != nil {
		return err
	}
	return remote.Put(ref, res.Index, opts...)
}
