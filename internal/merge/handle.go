package merge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// Next queues what follows once a revision's state changed (advance.Advancer.Next: the
// signing and promotion of a merged revision); a nil revision has nothing next.
type Next interface {
	Next(ctx context.Context, r *types.Revision) error
}

// PushHandler is the handler of types.SubjectRegistryPush: it syncs the pushed revision
// with the registry (HandlePush) and hands the revision to next, which queues its signing
// and promotion as steps of their own once it is merged: a promotion can take minutes
// and must not hold up the merges of other revisions. A push of a pipeline that is not
// configured is types.ErrUnknownPipeline.
func (m *Merger) PushHandler(next Next) func(context.Context, types.RegistryPush) error {
	return func(ctx context.Context, ev types.RegistryPush) error {
		rev, err := m.HandlePush(ctx, ev)
		if err != nil {
			return err
		}
		return next.Next(ctx, rev)
	}
}

// BuildResultHandler is the handler of types.SubjectBuildResults: it records the outcome
// of a build attempt (types.Revision.RecordBuild; a final failure fails the revision).
// A success is the evidence the merge waits for (the digest the build pushed), so the
// revision is synced with the registry then, and handed to next: its arch tag's
// notification may have come first and found nothing to vouch for it. A result of a
// pipeline that is not configured is types.ErrUnknownPipeline.
func (m *Merger) BuildResultHandler(next Next) func(context.Context, types.BuildResult) error {
	return func(ctx context.Context, res types.BuildResult) error {
		req := res.Request
		p, ok := m.pipelines[req.Pipeline]
		if !ok {
			return fmt.Errorf("recording build %s: %w %q", req.MsgID(), types.ErrUnknownPipeline, req.Pipeline)
		}
		_, err := m.store.Update(ctx, p.Name, req.Revision, func(r *types.Revision) error {
			return r.RecordBuild(res, time.Now().UTC())
		})
		if err != nil {
			return err
		}
		if res.Outcome == types.BuildFailed && res.Final {
			m.log.Error("build failed for good", "pipeline", req.Pipeline, "revision", req.Revision,
				"platform", req.Platform.String(), "job", res.Job, "attempts", res.Attempt, "reason", res.Reason)
		}
		if res.Outcome != types.BuildSucceeded {
			return nil
		}
		rev, err := m.Sync(ctx, p, req.Revision)
		if err != nil {
			return err
		}
		return next.Next(ctx, rev)
	}
}

// PushRetrying records, in the revision state, that the merge of ev's revision failed and
// will be retried (failures so far, the next attempt due at next), for status and
// operators, and counts it. Waiting for another replica's lease is not a failure.
func (m *Merger) PushRetrying(ctx context.Context, ev types.RegistryPush, failures int, next time.Time, err error) {
	if errors.Is(err, ErrInProgress) {
		return
	}
	m.metrics.StepRetries.WithLabelValues("merge").Inc()
	retry := types.Retry{Failures: failures, Error: err.Error(), Next: next.UTC()}
	_, uerr := m.store.Update(ctx, ev.Pipeline, ev.Revision, func(r *types.Revision) error {
		return r.MergeRetrying(retry)
	})
	if uerr != nil && ctx.Err() == nil {
		m.log.Warn("recording a merge retry", "pipeline", ev.Pipeline, "revision", ev.Revision, "error", uerr)
	}
}
