package promote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/promoter-dev/promoter/internal/registry"
	"golang.org/x/sync/errgroup"
)

// cosignSuffixes are the tags cosign attaches to sha256-<hex>: signatures, attestations,
// SBOMs. The OCI 1.1 referrers (and their sha256-<hex> fallback tag) are read separately.
var cosignSuffixes = []struct {
	suffix string
	kind   Kind
}{{registry.SignatureSuffix, KindSignature}, {registry.AttestationSuffix, KindAttest}, {registry.SBOMSuffix, KindSBOM}}

// maxAccessoryDepth bounds "signatures of signatures of ...": a referrer of a referrer of
// a child is depth 2. Real chains stop at 2; the bound only protects against loops.
const maxAccessoryDepth = 4

// node is one source manifest to copy, kept as the exact bytes the source served.
type node struct {
	kind   Kind
	digest v1.Hash
	mt     types.MediaType
	raw    []byte
	// tag is set for cosign accessories (sha256-<hex>.sig, ...): they are found and
	// written by tag. accessoryOf is the manifest such a tag is attached to.
	tag         string
	accessoryOf v1.Hash
	// subject is set for OCI referrers; writing them also updates the destination's
	// referrers list (go-containerregistry maintains the fallback tag when the registry
	// has no referrers API).
	subject *v1.Descriptor
	// blobs are the config and layers of an image manifest, distributable ones only.
	blobs []v1.Descriptor
	// children are the manifests of an index.
	children []v1.Descriptor
}

func (n *node) size() int64 { return int64(len(n.raw)) }

// plan is everything reachable from the source, in write order: every manifest comes after
// the manifests and blobs it references, accessories after their subject. It is a value:
// built whole by readPlan and never changed after, so the promotions that share it read
// it without locks.
type plan struct {
	src   name.Reference
	root  *node
	nodes []*node
}

// walker reads the source repository.
type walker struct {
	p      *Promoter
	repo   name.Repository
	puller *remote.Puller

	mu   sync.Mutex
	seen map[string]bool
}

// readPlan reads src and everything attached to it.
func (p *Promoter) readPlan(ctx context.Context, src name.Reference) (*plan, error) {
	puller, err := remote.NewPuller(p.reg.Remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", src, err)
	}
	w := &walker{p: p, repo: src.Context(), puller: puller, seen: map[string]bool{}}
	tree, err := w.tree(ctx, src, KindImage, "")
	if err != nil {
		return nil, sourceError(src, err)
	}
	nodes := tree
	// Breadth first over accessories: every manifest found so far may be signed, attested
	// or referred to, including the accessories themselves.
	frontier := tree
	for depth := 0; len(frontier) > 0 && depth < maxAccessoryDepth; depth++ {
		if frontier, err = w.accessoriesOf(ctx, frontier); err != nil {
			return nil, err
		}
		nodes = append(nodes, frontier...)
	}
	return &plan{src: src, root: tree[len(tree)-1], nodes: nodes}, nil
}

// accessoriesOf reads, at once, what is attached to each of nodes.
func (w *walker) accessoriesOf(ctx context.Context, nodes []*node) ([]*node, error) {
	found := make([][]*node, len(nodes))
	g, gctx := errgroup.WithContext(ctx)
	for i, n := range nodes {
		g.Go(func() error {
			var err error
			found[i], err = w.accessories(gctx, n)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

// tree reads ref and, for an index, its children, returning them children first. tag is
// set for cosign accessories. A manifest already read returns nothing.
func (w *walker) tree(ctx context.Context, ref name.Reference, kind Kind, tag string) ([]*node, error) {
	n, err := w.fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	key := n.digest.String() + " " + tag
	w.mu.Lock()
	dup := w.seen[key]
	w.seen[key] = true
	w.mu.Unlock()
	if dup {
		return nil, nil
	}
	if kind == KindImage && n.mt.IsIndex() {
		kind = KindIndex
	}
	n.kind, n.tag = kind, tag
	childKind := kind
	if kind == KindIndex {
		childKind = KindImage
	}
	subs := make([][]*node, len(n.children))
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range n.children {
		g.Go(func() error {
			var err error
			subs[i], err = w.tree(gctx, w.repo.Digest(c.Digest.String()), childKind, "")
			if err != nil {
				return fmt.Errorf("reading child %s of %s: %w", c.Digest, ref, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []*node
	for _, s := range subs {
		out = append(out, s...)
	}
	return append(out, n), nil
}

// fetch reads one manifest, exactly as served.
func (w *walker) fetch(ctx context.Context, ref name.Reference) (*node, error) {
	release, err := w.p.limits.acquire(ctx, w.repo.RegistryStr())
	if err != nil {
		return nil, err
	}
	desc, err := w.puller.Get(ctx, ref)
	release()
	if err != nil {
		return nil, err
	}
	return parseNode(desc.Digest, desc.MediaType, desc.Manifest)
}

// parseNode reads what a manifest references. Unknown media types are read as image-like
// (config and layers) or index-like (manifests), whichever fields they have, so an
// artifact manifest nobody told us about is still copied whole.
func parseNode(d v1.Hash, mt types.MediaType, raw []byte) (*node, error) {
	if mt.IsSchema1() {
		return nil, fmt.Errorf("manifest %s is Docker schema 1 (%s), which cannot be copied by digest: rebuild the image", d, mt)
	}
	var m struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
		Subject   *v1.Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest %s (%s): %w", d, mt, err)
	}
	n := &node{digest: d, mt: mt, raw: raw, subject: m.Subject, children: m.Manifests}
	if m.Config != nil && m.Config.Digest.Hex != "" {
		n.blobs = append(n.blobs, *m.Config)
	}
	for _, l := range m.Layers {
		// Foreign (non-distributable) layers live elsewhere by design, as with crane.
		if l.MediaType.IsDistributable() || l.MediaType == "" {
			n.blobs = append(n.blobs, l)
		}
	}
	return n, nil
}

// accessories finds what is attached to n in the source repository: cosign tags and OCI
// referrers (the referrers API, or its sha256-<hex> fallback tag), each with its children.
func (w *walker) accessories(ctx context.Context, n *node) ([]*node, error) {
	// The cosign tags and the referrers list are looked up at once: four round trips,
	// mostly 404s, that need not wait for each other.
	found := make([][]*node, len(cosignSuffixes)+1)
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range cosignSuffixes {
		g.Go(func() error {
			tag := w.repo.Tag(registry.AccessoryTag(n.digest.String(), s.suffix))
			t, err := w.tree(gctx, tag, s.kind, tag.TagStr())
			if registry.IsStatus(err, http.StatusNotFound) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", tag, err)
			}
			if len(t) > 0 {
				t[len(t)-1].accessoryOf = n.digest // tree lists the tagged manifest last
			}
			found[i] = t
			return nil
		})
	}
	g.Go(func() error {
		var err error
		found[len(cosignSuffixes)], err = w.referrers(gctx, n)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

// referrers reads the OCI referrers of n in the source repository (the referrers API, or
// its sha256-<hex> fallback tag), each with its children.
func (w *walker) referrers(ctx context.Context, n *node) ([]*node, error) {
	subject := w.repo.Digest(n.digest.String())
	release, err := w.p.limits.acquire(ctx, w.repo.RegistryStr())
	if err != nil {
		return nil, err
	}
	idx, err := w.p.reg.Referrers(subject, remote.Reuse(w.puller), remote.WithContext(ctx))
	release()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", subject, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", subject, err)
	}
	var out []*node
	for _, d := range im.Manifests {
		t, err := w.tree(ctx, w.repo.Digest(d.Digest.String()), KindReferrer, "")
		if registry.IsStatus(err, http.StatusNotFound) {
			// A dangling entry in the referrers list: there is nothing to copy.
			w.p.log.Warn("referrer listed but missing in source", "subject", subject.String(), "referrer", d.Digest.String())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading referrer %s of %s: %w", d.Digest, subject, err)
		}
		out = append(out, t...)
	}
	return out, nil
}

// sourceError turns the statuses that retrying cannot fix into a SourceError naming the
// registry and the reference.
func sourceError(ref name.Reference, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return &SourceError{Registry: ref.Context().RegistryStr(), Ref: ref.String(), Status: terr.StatusCode, Err: err}
		}
	}
	return fmt.Errorf("reading source %s from registry %s: %w", ref, ref.Context().RegistryStr(), err)
}
