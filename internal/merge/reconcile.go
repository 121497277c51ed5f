package merge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// ReconcileReport says what one reconcile pass of a pipeline found and did.
type ReconcileReport struct {
	// Complete is the number of revisions with every arch tag in the registry.
	Complete int
	// Merged were merged by this pass; Done had an index already; Conflicted are left to
	// an operator; Busy had a live merge lease of another holder; Unmerged are complete
	// but still without an index (a failed platform check, say).
	Merged, Done, Conflicted, Busy, Unmerged int
}

// Reconcile lists the staging tags of pipeline p and syncs every revision whose arch tags
// are all present but which has no index yet: registries keep undelivered notifications
// only in memory, so a push whose notification was lost is found here. It logs what it
// skips and why.
func (m *Merger) Reconcile(ctx context.Context, p types.Pipeline) (ReconcileReport, error) {
	var rep ReconcileReport
	repo, err := m.reg.ParseRepository(string(p.Staging))
	if err != nil {
		return rep, err
	}
	tags, err := remote.List(repo, m.reg.Remote(ctx)...)
	if err != nil {
		if registry.IsNotFound(err) {
			return rep, nil // nothing pushed yet
		}
		return rep, fmt.Errorf("listing tags of %s: %w", p.Staging, err)
	}
	revs := complete(p, tags)
	rep.Complete = len(revs)
	log := m.log.With("pipeline", p.Name)
	var errs []error
	for _, rev := range revs {
		if err := m.reconcile(ctx, p, rev, &rep, log); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rev, err))
		}
	}
	return rep, errors.Join(errs...)
}

// complete are the revisions, sorted, that have every arch tag of p among tags.
func complete(p types.Pipeline, tags []string) []string {
	archTags, cache := p.ArchTag.Compile(p.Platforms), p.Build.Cache
	found := map[string]int{} // revision → arch tags present
	for _, tag := range tags {
		if cache.TagIn(p.Staging, tag, p.Platforms) {
			continue
		}
		if rev, _, ok := archTags.Match(tag); ok {
			found[rev]++
		}
	}
	var revs []string
	for rev, n := range found {
		if n == len(p.Platforms) {
			revs = append(revs, rev)
		}
	}
	sort.Strings(revs)
	return revs
}

// reconcile syncs one complete revision unless its state says there is nothing to do,
// and counts what it found in rep.
func (m *Merger) reconcile(ctx context.Context, p types.Pipeline, rev string, rep *ReconcileReport, log *slog.Logger) error {
	cur, err := m.store.Get(ctx, p.Name, rev)
	switch {
	case err == nil && cur.Phase == types.PhaseConflicted:
		rep.Conflicted++
		log.Debug("reconciler skips a conflicted revision", "revision", rev, "reason", cur.Reason)
		return nil
	case err == nil && cur.Index != "":
		rep.Done++
		return nil
	case err != nil && !errors.Is(err, state.ErrNotFound):
		return err
	}
	after, err := m.Sync(ctx, p, rev)
	var busy *InProgressError
	switch {
	case errors.As(err, &busy):
		rep.Busy++
		log.Info("reconciler skips a revision another holder is merging", "revision", rev, "owner", busy.Owner, "until", busy.Until)
	case err != nil:
		return err
	case after != nil && after.Index != "":
		rep.Merged++
		log.Info("reconciler merged a complete revision whose notifications were lost or not yet handled", "revision", rev, "index", after.Index)
	default:
		rep.Unmerged++
		phase, reason := types.Phase(""), ""
		if after != nil {
			phase, reason = after.Phase, after.Reason
		}
		log.Info("reconciler leaves a complete revision unmerged", "revision", rev, "phase", phase, "reason", reason)
	}
	return nil
}
