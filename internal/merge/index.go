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
	var (
		entries []entry
		seen    = map[string]string{}
		created time.Time
	)
	for _, ch := range req.Children {
		e, err := fetchChild(ctx, c, ch)
		if err != nil {
			return nil, err
		}
		key := e.platform.String()
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s and %s are both %s: an index holds one image per platform", prev, ch.Ref, key)
		}
		seen[key] = ch.Ref
		if e.created.After(created) {
			created = e.created
		}
		entries = append(entries, e)
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
	// WriteIndex uploads any child (and its blobs) the target repository lacks, mounting
	// from the child's repository when it is on the same registry.
	if err := remote.WriteIndex(ref, res.Index, c.Remote(ctx)...); err != nil {
		return "", fmt.Errorf("pushing index to %s: %w", target, err)
	}
	return Pushed, nil
}
