package events

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/types"
)

// groupPublisher stores many messages as one group commit and waits for all of them;
// *bus.Bus is one. A publisher without it (a test's recorder) gets the messages one by one.
type groupPublisher interface {
	PublishAll(ctx context.Context, msgs []bus.Message) (duplicates []bool, err error)
}

// storePushes stores the kept pushes of one request and reports which ones the bus already
// had: together when the publisher group-commits, so that a notification of thousands of
// events costs a few fsyncs rather than one each; else one by one, in order, up to the
// first failure.
func (r *Receiver) storePushes(ctx context.Context, pushes []*types.RegistryPush) ([]bool, error) {
	if len(pushes) == 0 {
		return nil, nil
	}
	if g, ok := r.pub.(groupPublisher); ok {
		msgs := make([]bus.Message, len(pushes))
		for i, p := range pushes {
			msgs[i] = bus.Message{Subject: types.SubjectRegistryPush, MsgID: p.ID, Value: p}
		}
		return g.PublishAll(ctx, msgs)
	}
	dups := make([]bool, len(pushes))
	for i, p := range pushes {
		dup, err := r.pub.Publish(ctx, types.SubjectRegistryPush, p.ID, p)
		if err != nil {
			return nil, err
		}
		dups[i] = dup
	}
	return dups, nil
}

// loggedPushes bounds the pushes a request's summary line names.
const loggedPushes = 5

// logStored writes what a request stored: one line per push at debug, and one summary line
// of the request, at info when it kept anything (a request of ignored events only has
// their rate-limited "event ignored" lines at info, and its summary at debug). A
// notification of 10,000 events so logs one line, not 10,000.
func (r *Receiver) logStored(req *http.Request, source string, events int, kept []*types.RegistryPush, dups []bool, sum Summary, start time.Time) {
	ctx := req.Context()
	if r.log.Enabled(ctx, slog.LevelDebug) {
		for i, p := range kept {
			r.log.Debug("registry push", "source", source, "outcome", keptOutcome(dups[i]), "event_id", p.ID, "pipeline", p.Pipeline,
				"revision", p.Revision, "platform", p.Platform.String(), "tag", p.Tag, "digest", p.Digest)
		}
	}
	level := slog.LevelInfo
	if len(kept) == 0 {
		level = slog.LevelDebug
	}
	if !r.log.Enabled(ctx, level) {
		return
	}
	names := make([]string, 0, min(len(kept), loggedPushes)+1)
	for _, p := range kept[:min(len(kept), loggedPushes)] {
		names = append(names, p.Pipeline+" "+p.Revision+" "+p.Platform.String())
	}
	if more := len(kept) - loggedPushes; more > 0 {
		names = append(names, fmt.Sprintf("and %d more", more))
	}
	r.log.Log(ctx, level, "registry notification stored", "source", source, "events", events, "accepted", sum.Accepted,
		"duplicates", sum.Duplicates, "ignored", sum.Ignored, "pushes", strings.Join(names, ", "), "seconds", time.Since(start).Seconds())
}

// keptOutcome is the outcome label of a push the bus stored (kept) or already had
// (duplicate).
func keptOutcome(duplicate bool) string {
	if duplicate {
		return "duplicate"
	}
	return "kept"
}
