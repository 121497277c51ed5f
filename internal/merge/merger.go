package merge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// Merger turns arch-tag pushes into merged indexes. The revision state lives in the bus's
// KV bucket and is changed only by compare-and-swap, so any number of replicas may handle
// pushes of the same revision: exactly one of them sees the revision complete, and since
// the same children always give the same index, a redelivered push that merges again
// writes nothing new.
type Merger struct {
	Config   *config.Config
	Store    *state.Store
	Registry registry.Client
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
}

func (m *Merger) log() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return m.Logger
}

func (m *Merger) metrics() *metrics.Metrics {
	if m.Metrics == nil {
		return metrics.Discard()
	}
	return m.Metrics
}

// HandlePush records one arch-tag push and merges the revision once every platform is
// present. It returns the revision state afterwards. Errors are transient (registry or bus
// unavailable) and worth retrying; a platform mismatch or a conflict is recorded in the
// state, not returned.
func (m *Merger) HandlePush(ctx context.Context, ev types.RegistryPush) (*types.Revision, error) {
	p, ok := m.Config.Pipeline(ev.Pipeline)
	if !ok {
		return nil, fmt.Errorf("pipeline %q is not configured", ev.Pipeline)
	}
	var violation string
	rev, err := m.Store.Update(ctx, p.Name, ev.Revision, func(r *types.Revision) error {
		violation = ""
		initPlatforms(p, r)
		key := ev.Platform.String()
		ps, known := r.Platforms[key]
		if !known {
			return fmt.Errorf("%w: platform %s is not one of pipeline %s's", errSkip, key, p.Name)
		}
		switch {
		case ps.Digest == ev.Digest:
			return state.ErrNoChange
		case r.Index != "":
			// The index is pinned to the first digest; a new one under the same tag would
			// silently change what the published revision means.
			violation = fmt.Sprintf("%s:%s was pushed again with digest %s after revision %s was merged with %s; arch tags are immutable once merged",
				p.Staging, ps.Tag, ev.Digest, r.Revision, ps.Digest)
			if r.Phase == types.PhaseConflicted && r.Reason == violation {
				return state.ErrNoChange
			}
			r.Phase, r.Reason = types.PhaseConflicted, violation
			return nil
		case r.Phase == types.PhaseFailed:
			// A corrected image was pushed for a revision that failed its platform check:
			// try again with it.
			r.Phase, r.Reason, r.MergeStarted = types.PhaseWaiting, "", time.Time{}
		}
		ps.Digest = ev.Digest
		r.Platforms[key] = ps
		if r.Phase == "" || r.Phase == types.PhaseBuilding {
			r.Phase = types.PhaseWaiting
		}
		return nil
	})
	if errors.Is(err, errSkip) {
		m.log().Warn("ignoring push", "reason", err)
		return rev, nil
	}
	if err != nil {
		return nil, err
	}
	if violation != "" {
		m.metrics().ImmutabilityViolations.Inc()
		m.log().Error("immutable arch tag moved", "pipeline", p.Name, "revision", ev.Revision, "tag", ev.Tag, "reason", violation)
		return rev, nil
	}
	return m.mergeIfComplete(ctx, p, rev)
}

var errSkip = errors.New("skip")

// ErrInProgress says another replica claimed the merge of the revision moments ago. The
// caller should retry later (the daemon redelivers the push), so that a replica that dies
// mid-merge does not leave the revision unmerged.
var ErrInProgress = errors.New("merge in progress on another replica")

// claimTTL is how long a merge claim holds; merges take seconds.
const claimTTL = time.Minute

// initPlatforms fills in the platforms a new revision expects, with their arch tags.
func initPlatforms(p config.Pipeline, r *types.Revision) {
	for _, pl := range p.PlatformList() {
		if _, ok := r.Platforms[pl.String()]; !ok {
			r.Platforms[pl.String()] = types.PlatformState{Tag: types.ArchTag(p.ArchTag).Render(r.Revision, pl)}
		}
	}
}

// mergeIfComplete merges rev if every platform has a digest and nothing was merged yet.
func (m *Merger) mergeIfComplete(ctx context.Context, p config.Pipeline, rev *types.Revision) (*types.Revision, error) {
	if rev.Index != "" || rev.Phase == types.PhaseFailed || rev.Phase == types.PhaseConflicted {
		return rev, nil
	}
	var children []Child
	for _, pl := range p.PlatformList() {
		ps := rev.Platforms[pl.String()]
		if ps.Digest == "" {
			return rev, nil
		}
		// Pinned by digest (the tag may move), named with the tag for error messages.
		children = append(children, Child{Ref: types.Repository(p.Staging).Tag(ps.Tag) + "@" + ps.Digest, Platform: pl})
	}
	rev, claimed, err := m.claim(ctx, p, rev.Revision)
	if err != nil || !claimed {
		return rev, err
	}
	log := m.log().With("pipeline", p.Name, "repo", p.Staging, "revision", rev.Revision)
	target := types.Repository(p.Staging).Tag(rev.Revision)
	start := time.Now()
	res, err := Build(ctx, m.Registry, Request{Target: target, Children: children, Revision: rev.Revision, Source: p.Source.Repo})
	if errors.Is(err, ErrPlatform) {
		m.metrics().Merges.WithLabelValues("failed").Inc()
		log.Error("merge refused: platform mismatch", "reason", err.Error())
		return m.finish(ctx, p, rev, types.PhaseFailed, err.Error(), "")
	}
	if err != nil {
		m.metrics().Merges.WithLabelValues("error").Inc()
		m.release(ctx, p, rev.Revision)
		return nil, fmt.Errorf("merging %s: %w", target, err)
	}
	outcome, err := Push(ctx, m.Registry, target, res)
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		m.metrics().Merges.WithLabelValues("conflicted").Inc()
		m.metrics().ImmutabilityViolations.Inc()
		log.Error("merge refused: revision tag is immutable", "reason", err.Error())
		return m.finish(ctx, p, rev, types.PhaseConflicted, err.Error(), "")
	}
	if err != nil {
		m.metrics().Merges.WithLabelValues("error").Inc()
		m.release(ctx, p, rev.Revision)
		return nil, err
	}
	m.metrics().Merges.WithLabelValues(string(outcome)).Inc()
	m.metrics().MergeDuration.Observe(time.Since(start).Seconds())
	var kids []string
	for _, c := range res.Children {
		kids = append(kids, c.Platform.String()+"="+c.Digest)
	}
	log.Info("merged", "digest", res.Digest, "outcome", string(outcome), "children", kids, "seconds", time.Since(start).Seconds())
	return m.finish(ctx, p, rev, types.PhaseMerged, "", res.Digest)
}

// claim marks the revision as being merged by this replica.
func (m *Merger) claim(ctx context.Context, p config.Pipeline, revision string) (*types.Revision, bool, error) {
	claimed := false
	rev, err := m.Store.Update(ctx, p.Name, revision, func(r *types.Revision) error {
		claimed = false
		if r.Index != "" || r.Phase == types.PhaseFailed || r.Phase == types.PhaseConflicted {
			return state.ErrNoChange
		}
		if !r.MergeStarted.IsZero() && time.Since(r.MergeStarted) < claimTTL {
			return ErrInProgress
		}
		r.MergeStarted, claimed = time.Now().UTC(), true
		return nil
	})
	return rev, claimed, err
}

// finish records the end of a merge attempt.
func (m *Merger) finish(ctx context.Context, p config.Pipeline, rev *types.Revision, phase types.Phase, reason, index string) (*types.Revision, error) {
	return m.Store.Update(ctx, p.Name, rev.Revision, func(r *types.Revision) error {
		if r.Index != "" {
			return state.ErrNoChange // another replica recorded it first
		}
		r.Phase, r.Reason, r.Index, r.MergeStarted = phase, reason, index, time.Time{}
		return nil
	})
}

// release drops this replica's claim after a transient failure, so a retry need not wait
// for the claim to expire.
func (m *Merger) release(ctx context.Context, p config.Pipeline, revision string) {
	_, _ = m.Store.Update(ctx, p.Name, revision, func(r *types.Revision) error {
		if r.MergeStarted.IsZero() {
			return state.ErrNoChange
		}
		r.MergeStarted = time.Time{}
		return nil
	})
}

// Reconcile lists the staging tags of pipeline p and merges every revision whose arch tags
// are all present but which has no index yet: registries keep undelivered notifications
// only in memory, so a push whose notification was lost is found here.
func (m *Merger) Reconcile(ctx context.Context, p config.Pipeline) error {
	repo, err := m.Registry.ParseRepository(p.Staging)
	if err != nil {
		return err
	}
	tags, err := remote.List(repo, m.Registry.Remote(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil // nothing pushed yet
		}
		return fmt.Errorf("listing tags of %s: %w", p.Staging, err)
	}
	platforms := p.PlatformList()
	at := types.ArchTag(p.ArchTag)
	found := map[string]map[string]types.Platform{} // revision → tag → platform
	for _, tag := range tags {
		rev, pl, ok := at.Match(tag, platforms)
		if !ok {
			continue
		}
		if found[rev] == nil {
			found[rev] = map[string]types.Platform{}
		}
		found[rev][tag] = pl
	}
	revs := make([]string, 0, len(found))
	for rev, got := range found {
		if len(got) == len(platforms) {
			revs = append(revs, rev)
		}
	}
	sort.Strings(revs)
	var errs []error
	for _, rev := range revs {
		cur, err := m.Store.Get(ctx, p.Name, rev)
		if err == nil && (cur.Index != "" || cur.Phase == types.PhaseConflicted) {
			continue
		}
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		if err := m.reconcileRevision(ctx, p, rev, found[rev]); err != nil && !errors.Is(err, ErrInProgress) {
			errs = append(errs, fmt.Errorf("%s: %w", rev, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Merger) reconcileRevision(ctx context.Context, p config.Pipeline, rev string, tags map[string]types.Platform) error {
	m.log().Info("reconciler found a complete revision without an index", "pipeline", p.Name, "revision", rev)
	names := make([]string, 0, len(tags))
	for tag := range tags {
		names = append(names, tag)
	}
	sort.Strings(names)
	for _, tag := range names {
		ref, err := m.Registry.ParseReference(types.Repository(p.Staging).Tag(tag))
		if err != nil {
			return err
		}
		d, err := remote.Head(ref, m.Registry.Remote(ctx)...)
		if err != nil {
			return fmt.Errorf("reading %s: %w", ref, err)
		}
		ev := types.RegistryPush{
			ID: "reconcile/" + p.Name + "/" + tag + "/" + d.Digest.String(), Pipeline: p.Name, Revision: rev,
			Platform: tags[tag], Tag: tag, Digest: d.Digest.String(), MediaType: string(d.MediaType),
		}
		if _, err := m.HandlePush(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}
