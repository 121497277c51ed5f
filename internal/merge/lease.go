package merge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// DefaultLease is how long a merge claim holds without renewal. The owner renews it every
// third of that while it merges, so a claim outlives its owner by at most this long.
const DefaultLease = 10 * time.Second

// ErrInProgress says another replica (or another handler of this one) holds a live lease
// on the revision's merge. The caller should retry once the lease can have expired
// (InProgressError.Until), so that a replica that died mid-merge does not leave the
// revision unmerged.
var ErrInProgress = errors.New("merge in progress")

// InProgressError names the holder of a live merge lease.
type InProgressError struct {
	Owner string
	Until time.Time
}

func (e *InProgressError) Error() string {
	return fmt.Sprintf("%v: claimed by %s until %s", ErrInProgress, e.Owner, e.Until.Format(time.RFC3339Nano))
}

func (e *InProgressError) Unwrap() error { return ErrInProgress }

// RetryAfter is how long to wait before the lease can have expired.
func (e *InProgressError) RetryAfter() time.Duration {
	return max(time.Until(e.Until), 0) + 100*time.Millisecond
}

// claim is this replica's hold on one revision's merge: the lease it wrote and the
// revision as it was when claimed (its platform digests are the merge's inputs).
type claim struct {
	id  string
	rev *types.Revision
}

// claim takes the merge lease of revision unless another holder's lease is live. It
// returns nil (and no error) when there is nothing to merge any more.
func (m *Merger) claim(ctx context.Context, p types.Pipeline, revision string) (*claim, error) {
	lease := m.newLease()
	rev, expired, err := state.Update(ctx, m.store, p.Name, revision, func(r *types.Revision) (*types.Lease, error) {
		if !m.mergeable(p, r) {
			return nil, state.ErrNoChange
		}
		expired, err := r.TakeMergeLease(lease, m.lease, time.Now())
		if errors.Is(err, types.ErrLeaseHeld) {
			return nil, &InProgressError{Owner: r.Merging.Owner, Until: r.Merging.Expires}
		}
		return expired, err
	})
	if err != nil {
		return nil, err
	}
	m.tookOver(p, revision, expired)
	if !rev.HoldsMergeLease(lease.ID) {
		return nil, nil
	}
	return &claim{id: lease.ID, rev: rev}, nil
}

// newLease is a merge lease of this replica's, not yet written.
func (m *Merger) newLease() types.Lease {
	return types.Lease{Owner: m.owner, ID: m.owner + "/" + nonce()}
}

// tookOver logs the expired lease of another holder a write of this replica's took over.
func (m *Merger) tookOver(p types.Pipeline, revision string, expired *types.Lease) {
	if expired != nil {
		m.log.Info("taking over an expired merge lease", "pipeline", p.Name, "revision", revision,
			"owner", expired.Owner, "expired", expired.Expires)
	}
}

// mergeable reports whether r is to be merged now: it has every platform's digest and is
// not merged or stopped (types.Revision.Mergeable), and it does not wait for a build
// result to vouch for one of them.
func (m *Merger) mergeable(p types.Pipeline, r *types.Revision) bool {
	return r.Mergeable(p) && len(m.awaitsBuild(p, r)) == 0
}

// renew keeps c's lease alive until stop is closed, so that a long merge is not taken over
// while its owner still works on it.
func (m *Merger) renew(ctx context.Context, p types.Pipeline, c *claim, stop <-chan struct{}) {
	t := time.NewTicker(m.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := m.store.Update(ctx, p.Name, c.rev.Revision, func(r *types.Revision) error {
			return r.RenewMergeLease(c.id, m.lease, time.Now()) // no change once finished, or taken over
		})
		if err != nil && ctx.Err() == nil {
			m.log.Warn("renewing merge lease", "pipeline", p.Name, "revision", c.rev.Revision, "error", err)
		}
	}
}

// release drops c's lease after a transient failure, so a retry need not wait for it to
// expire.
func (m *Merger) release(ctx context.Context, p types.Pipeline, c *claim) {
	_, _ = m.store.Update(ctx, p.Name, c.rev.Revision, func(r *types.Revision) error {
		return r.ReleaseMergeLease(c.id)
	})
}

func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
