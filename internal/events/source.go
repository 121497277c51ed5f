package events

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
)

// push is a source push as every provider describes it.
type push struct {
	delivery string   // provider's delivery id, for the logs; empty when it gave none
	repos    []string // every URL form the provider gives for the repository
	ref      string
	revision string
}

var zeroRevision = regexp.MustCompile(`^0+$`)

// publishSource turns a push into a SourceChanged event when it is for a pipeline's
// repository and branch, and answers.
func (r *Receiver) publishSource(w http.ResponseWriter, req *http.Request, source string, p push) {
	branch, isBranch := strings.CutPrefix(p.ref, "refs/heads/")
	if zeroRevision.MatchString(p.revision) {
		r.ignoreSource(w, source, "branch deleted")
		return
	}
	if err := types.ValidateRevision(p.revision); err != nil {
		r.metrics.EventsReceived.WithLabelValues(source, "push", "rejected").Inc()
		fail(w, reject(http.StatusBadRequest, "revision is not a commit id: %v", err))
		return
	}
	if !isBranch {
		r.ignoreSource(w, source, "not a branch: "+p.ref)
		return
	}
	pl, ok := r.sourceFor(p.repos, branch)
	if !ok {
		r.ignoreSource(w, source, "no pipeline follows this repository and branch")
		return
	}
	ev := types.SourceChanged{
		ID: p.delivery, Pipeline: pl.name, Repo: firstNonEmpty(p.repos), Ref: p.ref, Revision: p.revision,
		Received: r.now().UTC(),
	}
	// The message id is the pipeline and revision (SourceChanged.MsgID), not the delivery
	// id: a redelivery under a new id, another forge's hook and the source poller's find
	// of the same head are the one message they describe.
	dup, err := r.pub.Publish(req.Context(), types.SubjectSourceChanged, ev.MsgID(), ev)
	if err != nil {
		r.log.Error("storing source event failed", "source", source, "delivery", p.delivery, "error", err)
		fail(w, err)
		return
	}
	sum := Summary{Accepted: 1}
	outcome := "kept"
	if dup {
		sum, outcome = Summary{Duplicates: 1}, "duplicate"
	}
	r.metrics.EventsReceived.WithLabelValues(source, "push", outcome).Inc()
	r.log.Info("source push", "outcome", outcome, "source", source, "pipeline", pl.name, "revision", p.revision, "delivery", p.delivery)
	writeJSON(w, http.StatusOK, sum)
}

func (r *Receiver) ignoreSource(w http.ResponseWriter, source, why string) {
	r.metrics.EventsReceived.WithLabelValues(source, "push", "ignored").Inc()
	r.log.Debug("source push ignored", "source", source, "why", why)
	writeJSON(w, http.StatusOK, Summary{Ignored: 1})
}

// rejectSource counts and answers a rejected source request.
func (r *Receiver) rejectSource(w http.ResponseWriter, req *http.Request, source string, err error) {
	r.metrics.EventsReceived.WithLabelValues(source, "push", "rejected").Inc()
	status := fail(w, err)
	r.log.Warn("source webhook rejected", "source", source, "status", status, "error", err, "remote", req.RemoteAddr)
}

func firstNonEmpty(ss []string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
