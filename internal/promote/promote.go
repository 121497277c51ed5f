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

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/types"
)

// DefaultJobs is the number of concurrent requests per registry host (WithJobs). Chosen with BenchmarkPromoteJobs (bench_test.go): on 2 platforms x 8 layers x 8 MiB
// between two local registries, 8 is as fast as 16 and clearly faster than 4.
const DefaultJobs = 8

// DefaultTimeout bounds one promotion of one destination, retries included (WithTimeout).
const DefaultTimeout = 30 * time.Minute

// Target is one destination of a promotion.
type Target struct {
	// Ref is where the source goes: "host/repo" (the source's tag is kept; a digest source
	// is copied by digest only), "host/repo:tag" or "host/repo@sha256:...".
	Ref string
	// Tags are more tags of Ref's repository to point at the promoted digest once Ref is
	// written (a pipeline destination's mutable tags, for example latest). Everything is
	// there by then: each is one manifest write, or none when it points there already.
	Tags []string
	// MutableTags are the tags, Ref's or Tags', that may move from another digest. Every
	// other tag that exists with a different digest fails with types.ErrTagImmutable.
	MutableTags []string
	// RequireSignature gates the promotion on WithVerify's function: it must accept the
	// source, pinned by digest, before a single byte is copied.
	RequireSignature bool
}

// DestinationTarget is the promotion of a revision to pipeline destination d: under tag,
// which is immutable, then d's mutable tags moved to it, gated by d's signature
// requirement.
func DestinationTarget(d types.Destination, tag string) Target {
	return Target{Ref: d.To.Tag(tag), Tags: d.MutableTags, MutableTags: d.MutableTags, RequireSignature: d.RequireSignature}
}

// ReleaseTarget is the promotion of a release tag to pipeline destination d: that tag
// only, immutable whatever d's mutable tags are, moving no other tag. It comes after the
// revision tag, so everything but the tag is there already.
func ReleaseTarget(d types.Destination, tag string) Target {
	return Target{Ref: d.To.Tag(tag), RequireSignature: d.RequireSignature}
}

// Promoter copies images between registries. It is safe for concurrent use, and
// concurrent promotions share its per-host request limits and their reads of a source.
type Promoter struct {
	reg      registry.Client
	limits   *limits
	timeout  time.Duration
	metrics  *metrics.Metrics
	log      *slog.Logger
	verify   func(ctx context.Context, ref string) error
	dryRun   bool
	progress func(Event)

	mu sync.Mutex
	// plans are the reads of a source under way, which concurrent promotions of it share
	// (read).
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
	p := &Promoter{reg: reg, limits: newLimits(o.jobs), timeout: o.timeout, metrics: o.metrics, log: o.log,
		verify: o.verify, dryRun: o.dryRun, plans: map[string]*planCall{}}
	if o.progress != nil {
		var mu sync.Mutex
		p.progress = func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			o.progress(e)
		}
	}
	return p, nil
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

// Result is the outcome of one target.
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

// Promote copies src (a tag or digest reference) to every target, in parallel, with its
// signatures and referrers. It reads the source once (shared with the promotions of the
// same source running meanwhile), runs the signature gate once when a target requires it,
// then streams each source blob once to every destination that lacks it. The returned
// slices have one entry per target, in order; a result is nil when its target failed
// before its destination was resolved (the source unreadable, the gate refusing).
func (p *Promoter) Promote(ctx context.Context, src string, targets []Target) ([]*Result, []error) {
	results := make([]*Result, len(targets))
	errs := make([]error, len(targets))
	if err := p.gateReady(targets); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return results, errs
	}
	if len(targets) == 0 {
		return results, errs
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	pl, srcs, outcome, err := p.prepare(ctx, src, targets)
	if err != nil {
		for i := range errs {
			errs[i] = err
			if !p.dryRun {
				p.count(outcome)
			}
		}
		return results, errs
	}
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			results[i], errs[i] = p.promoteTarget(ctx, pl, t, srcs, i)
		})
	}
	wg.Wait()
	return results, errs
}

// gateReady fails when a target requires a signature that nothing can verify.
func (p *Promoter) gateReady(targets []Target) error {
	for _, t := range targets {
		if t.RequireSignature && p.verify == nil {
			return fmt.Errorf("%s %w", t.Ref, ErrNoVerifier)
		}
	}
	return nil
}

// prepare reads src and everything attached to it (read), and runs the signature gate on
// the digest it is about to copy when a target requires it. srcs gives each target its
// part in the plan's shared blob reads. On failure, outcome is the promotions' metric
// outcome.
func (p *Promoter) prepare(ctx context.Context, src string, targets []Target) (pl *plan, srcs sources, outcome string, err error) {
	srcRef, err := p.reg.ParseReference(src)
	if err != nil {
		return nil, sources{}, "failed", err
	}
	parts := len(targets)
	if p.dryRun {
		parts = 0 // nothing is uploaded
	}
	if !slices.ContainsFunc(targets, func(t Target) bool { return t.RequireSignature }) {
		if pl, srcs, err = p.read(ctx, srcRef, parts); err != nil {
			return nil, sources{}, "failed", err
		}
		return pl, srcs, "", nil
	}
	// Verify the digest about to be copied, not a tag, which could move between the check
	// and the copy. A source named by digest (as the daemon names it) is verified while
	// it is read; a tag is read first, to learn its digest. Nothing is copied before both.
	pinned, byDigest := srcRef.(name.Digest)
	verified := make(chan error, 1)
	if byDigest {
		go func() { verified <- p.verify(ctx, pinned.String()) }()
	}
	if pl, srcs, err = p.read(ctx, srcRef, parts); err != nil {
		return nil, sources{}, "failed", err
	}
	if !byDigest {
		pinned = srcRef.Context().Digest(pl.root.digest.String())
		verified <- p.verify(ctx, pinned.String())
	}
	if err := <-verified; err != nil {
		srcs.leave()
		return nil, sources{}, "unsigned", fmt.Errorf("%w: %s: %w", ErrNotSigned, pinned, err)
	}
	return pl, srcs, "", nil
}

// promoteTarget runs target i under its own deadline and records its metrics.
func (p *Promoter) promoteTarget(ctx context.Context, pl *plan, t Target, srcs sources, i int) (*Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	res, err := p.copyTo(ctx, pl, t, srcs, i)
	if err == nil {
		p.log.Info("promoted", "source", pl.src.String(), "destination", res.Destination, "digest", res.Digest,
			"uploaded_bytes", res.Uploaded, "mounted_bytes", res.Mounted, "skipped_bytes", res.Skipped,
			"duration", time.Since(start).Round(time.Millisecond), "dry_run", p.dryRun)
	}
	if !p.dryRun {
		p.record(res, err, time.Since(start))
	}
	return res, err
}

// record counts one target's promotion in the metrics.
func (p *Promoter) record(res *Result, err error, took time.Duration) {
	p.metrics.PromoteDuration.Observe(took.Seconds())
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
