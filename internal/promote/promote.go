package promote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/semaphore"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// DefaultJobs is the number of concurrent requests per registry host (WithJobs). Chosen with BenchmarkPromoteJobs (bench_test.go): on 2 platforms x 8 layers x 8 MiB
// between two local registries, 8 is as fast as 16 and clearly faster than 4.
const DefaultJobs = 8

// DefaultTimeout bounds one promotion of one destination, retries included (WithTimeout).
const DefaultTimeout = 30 * time.Minute

// Options are the per-call knobs of a promotion.
type Options struct {
	// MutableTags are the destination tags that may move to another digest (for example
	// "latest"). Every other tag that exists with a different digest fails with
	// types.ErrTagImmutable.
	MutableTags []string
	// Verify is the signature gate: when set, it must accept the source, pinned by digest,
	// before a single byte is copied. nil means no gate.
	Verify func(ctx context.Context, ref string) error
	// DryRun plans and checks the destinations but writes nothing; Result.Items says what
	// would be copied, mounted or skipped.
	DryRun bool
	// Progress, when set, receives one Event per blob or manifest handled. Calls are
	// serialized, also across destinations of PromoteAll.
	Progress func(Event)
}

// Promoter copies images between registries. It is safe for concurrent use, and
// concurrent promotions share its per-host request limits.
type Promoter struct {
	reg     registry.Client
	jobs    int
	timeout time.Duration
	metrics *metrics.Metrics
	log     *slog.Logger
	verify  func(ctx context.Context, ref string) error

	mu    sync.Mutex
	hosts map[string]*semaphore.Weighted
	// plans are the reads of a source under way, which concurrent promotions of it share
	// (plan).
	plans map[string]*planCall
}

// New promotes through reg (credentials, transports and retries).
func New(reg registry.Client, opts ...Option) (*Promoter, error) {
	o := options{jobs: DefaultJobs, timeout: DefaultTimeout, metrics: metrics.Discard(), log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Promoter{reg: reg, jobs: o.jobs, timeout: o.timeout, metrics: o.metrics, log: o.log, verify: o.verify}, nil
}

// PromoteDestination promotes src (by digest) to a pipeline destination: under tag, which
// is immutable, then moves the destination's mutable tags (for example latest) to it. A
// destination that requires a signature is gated by WithVerify's function. It returns the
// digest the destination's tag points at.
func (p *Promoter) PromoteDestination(ctx context.Context, src, tag string, d types.Destination) (string, error) {
	opt, err := p.destinationOptions(d)
	if err != nil {
		return "", err
	}
	opt.MutableTags = d.MutableTags
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// One plan for the revision tag and every mutable tag: the source is read once. The
	// promotions of the same source to other destinations that run meanwhile (the
	// daemon's steps) share that read, and each blob's download (plan).
	pl, share, outcome, err := p.prepare(ctx, src, opt)
	if err != nil {
		p.count(outcome)
		return "", err
	}
	res, err := p.promoteOne(ctx, pl, d.To.Tag(tag), opt, share)
	if err != nil {
		return "", err
	}
	for _, mt := range d.MutableTags {
		// Everything was just copied: this only writes the tag.
		ref, err := p.reg.ParseReference(d.To.Tag(mt))
		if err != nil {
			return "", err
		}
		tag, ok := ref.(name.Tag)
		if !ok {
			return "", fmt.Errorf("mutable tag %q of %s is not a tag", mt, d.To)
		}
		if err := p.moveTag(ctx, pl, tag, opt); err != nil {
			return "", fmt.Errorf("moving %s:%s: %w", d.To, mt, err)
		}
	}
	return res.Digest, nil
}

// moveTag points tag at the planned root, which the destination already holds, unless it
// points there already; a tag that is not in opt.MutableTags and points elsewhere is a
// types.TagImmutableError.
func (p *Promoter) moveTag(ctx context.Context, pl *plan, tag name.Tag, opt Options) error {
	d, err := p.newDestination(ctx, pl, tag, opt)
	if err != nil {
		return err
	}
	same, err := d.checkTag(ctx, tag)
	if err != nil || same {
		return err
	}
	return d.put(ctx, tag, pl.root)
}

// PromoteTag promotes src (by digest) to a pipeline destination under tag only, which is
// immutable whatever the destination's mutable tags are, and moves no other tag: a
// release tag, promoted after the revision tag, where everything but the tag is already
// there. It is gated by the destination's signature requirement like PromoteDestination,
// and returns the digest the tag points at; a tag that points elsewhere fails with
// types.ErrTagImmutable.
func (p *Promoter) PromoteTag(ctx context.Context, src, tag string, d types.Destination) (string, error) {
	opt, err := p.destinationOptions(d)
	if err != nil {
		return "", err
	}
	res, err := p.Promote(ctx, src, d.To.Tag(tag), opt)
	if err != nil {
		return "", err
	}
	return res.Digest, nil
}

// destinationOptions are the options of a promotion to d: its signature gate.
func (p *Promoter) destinationOptions(d types.Destination) (Options, error) {
	if !d.RequireSignature {
		return Options{}, nil
	}
	if p.verify == nil {
		return Options{}, fmt.Errorf("%s requires a signature, but no verification key is configured", d.To)
	}
	return Options{Verify: p.verify}, nil
}

// Action is what promotion does (or would do) with one item.
type Action string

const (
	// Copy uploads a blob streamed from the source, or writes a manifest.
	Copy Action = "copy"
	// Mount links a blob from another repository of the same registry: no bytes move.
	Mount Action = "mount"
	// Skip leaves an item the destination already has.
	Skip Action = "skip"
	// Merge writes a cosign signature/attestation manifest holding the destination's
	// existing layers plus the source's: signatures are added, never dropped.
	Merge Action = "merge"
	// Tag points the destination tag at the promoted digest.
	Tag Action = "tag"
)

// Kind is what an item is.
type Kind string

const (
	KindIndex     Kind = "index"
	KindImage     Kind = "image"
	KindSignature Kind = "signature"   // cosign sha256-<hex>.sig
	KindAttest    Kind = "attestation" // cosign sha256-<hex>.att
	KindSBOM      Kind = "sbom"        // cosign sha256-<hex>.sbom
	KindReferrer  Kind = "referrer"    // OCI 1.1 referrer (bundle, SBOM, attestation, ...)
	KindBlob      Kind = "blob"
)

// Item is one manifest or blob of a promotion and what was (or would be) done with it.
type Item struct {
	Kind   Kind   `json:"kind"`
	Ref    string `json:"ref"` // destination reference (manifests) or digest (blobs)
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Action Action `json:"action"`
}

// Result is the outcome of one destination.
type Result struct {
	// Destination is the reference written, "host/repo:tag" or "host/repo@sha256:...".
	Destination string
	// Digest is the promoted (root) manifest digest, identical to the source's.
	Digest string
	// Items lists every manifest and blob in the order handled.
	Items []Item
	// Uploaded, Mounted and Skipped count blob bytes by how they reached the destination.
	Uploaded, Mounted, Skipped int64
}

// Event reports progress of one destination.
type Event struct {
	Destination string
	Item        Item
	// BlobsDone/BlobsTotal and BytesDone/BytesTotal count this destination's blobs.
	BlobsDone, BlobsTotal int
	BytesDone, BytesTotal int64
}

// Promote copies src (a tag or digest reference) to dst. dst may be "host/repo" (the
// source's tag is kept; a digest source is copied by digest only) or "host/repo:tag".
func (p *Promoter) Promote(ctx context.Context, src, dst string, opt Options) (*Result, error) {
	rs, errs := p.PromoteAll(ctx, src, []string{dst}, opt)
	return rs[0], errs[0]
}

// PromoteAll promotes src to several destinations in parallel. It reads and verifies the
// source once; the returned slices have one entry per destination, in order.
func (p *Promoter) PromoteAll(ctx context.Context, src string, dsts []string, opt Options) ([]*Result, []error) {
	results := make([]*Result, len(dsts))
	errs := make([]error, len(dsts))
	fail := func(err error, outcome string) ([]*Result, []error) {
		for i := range errs {
			errs[i] = err
			if !opt.DryRun {
				p.count(outcome)
			}
		}
		return results, errs
	}
	if len(dsts) == 0 {
		return results, errs
	}
	if opt.Progress != nil {
		var mu sync.Mutex
		progress := opt.Progress
		opt.Progress = func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			progress(e)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	pl, planned, outcome, err := p.prepare(ctx, src, opt)
	if err != nil {
		return fail(err, outcome)
	}

	// The destinations share each source blob's read (fanout.go): this call's, or, for
	// one destination, those of the other promotions that share the plan.
	shares := make([]*sharing, len(dsts))
	switch {
	case opt.DryRun:
		planned.leave() // nothing is uploaded
	case len(dsts) == 1:
		shares[0] = planned
	default:
		planned.leave()
		f := newFanout(len(dsts))
		for i := range shares {
			shares[i] = f.member(i)
		}
	}
	var wg sync.WaitGroup
	for i, dst := range dsts {
		wg.Go(func() {
			results[i], errs[i] = p.promoteOne(ctx, pl, dst, opt, shares[i])
		})
	}
	wg.Wait()
	return results, errs
}

// prepare reads src and everything attached to it (plan), and runs the signature gate on
// the digest it is about to copy. share is this promotion's part in the plan's shared blob
// reads, nil when no other promotion shares the plan. On failure, outcome is the
// promotions' metric outcome.
func (p *Promoter) prepare(ctx context.Context, src string, opt Options) (pl *plan, share *sharing, outcome string, err error) {
	srcRef, err := p.reg.ParseReference(src)
	if err != nil {
		return nil, nil, "failed", err
	}
	if opt.Verify == nil {
		if pl, share, err = p.plan(ctx, srcRef); err != nil {
			return nil, nil, "failed", err
		}
		return pl, share, "", nil
	}
	// Verify the digest about to be copied, not a tag, which could move between the check
	// and the copy. A source named by digest (as the daemon names it) is verified while
	// it is read; a tag is read first, to learn its digest. Nothing is copied before both.
	pinned, byDigest := srcRef.(name.Digest)
	verified := make(chan error, 1)
	if byDigest {
		go func() { verified <- opt.Verify(ctx, pinned.String()) }()
	}
	if pl, share, err = p.plan(ctx, srcRef); err != nil {
		return nil, nil, "failed", err
	}
	if !byDigest {
		pinned = srcRef.Context().Digest(pl.root.digest.String())
		verified <- opt.Verify(ctx, pinned.String())
	}
	if err := <-verified; err != nil {
		share.leave()
		return nil, nil, "unsigned", fmt.Errorf("%w: %s: %w", ErrNotSigned, pinned, err)
	}
	return pl, share, "", nil
}

// promoteOne runs one destination under its own deadline and records its metrics. With
// share, its blob uploads share the source reads of other destinations.
func (p *Promoter) promoteOne(ctx context.Context, pl *plan, dst string, opt Options, share *sharing) (*Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	defer share.leave()
	res, err := p.copyTo(ctx, pl, dst, opt, share)
	if err == nil {
		p.log.Info("promoted", "source", pl.src.String(), "destination", res.Destination, "digest", res.Digest,
			"uploaded_bytes", res.Uploaded, "mounted_bytes", res.Mounted, "skipped_bytes", res.Skipped,
			"duration", time.Since(start).Round(time.Millisecond), "dry_run", opt.DryRun)
	}
	if opt.DryRun {
		return res, err
	}
	p.metrics.PromoteDuration.Observe(time.Since(start).Seconds())
	if res != nil {
		p.metrics.PromoteBytes.WithLabelValues("uploaded").Add(float64(res.Uploaded))
		p.metrics.PromoteBytes.WithLabelValues("mounted").Add(float64(res.Mounted))
		p.metrics.PromoteBytes.WithLabelValues("skipped").Add(float64(res.Skipped))
	}
	switch {
	case errors.Is(err, types.ErrTagImmutable):
		p.count("immutable")
		p.metrics.ImmutabilityViolations.Inc()
	case err != nil:
		p.count("failed")
	case res.changed():
		p.count("promoted")
	default:
		p.count("skipped")
	}
	return res, err
}

func (p *Promoter) count(outcome string) {
	p.metrics.Promotions.WithLabelValues(outcome).Inc()
}

// changed reports whether anything was written to the destination.
func (r *Result) changed() bool {
	return slices.ContainsFunc(r.Items, func(it Item) bool { return it.Action != Skip })
}

// destination resolves dst against the source: "host/repo" keeps the source's tag.
func (p *Promoter) destination(dst string, src name.Reference) (name.Reference, error) {
	if i := strings.LastIndex(dst, "/"); i >= 0 && (strings.Contains(dst[i:], ":") || strings.Contains(dst, "@")) {
		return p.reg.ParseReference(dst)
	}
	repo, err := p.reg.ParseRepository(dst)
	if err != nil {
		return nil, err
	}
	switch s := src.(type) {
	case name.Tag:
		return repo.Tag(s.TagStr()), nil
	default:
		return repo.Digest(src.Identifier()), nil
	}
}
