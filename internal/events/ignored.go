package events

import (
	"sync"
	"time"
)

// Why an acknowledged event was not kept: the reason label of
// promoter_events_received_total and the reason of the "event ignored" log line. The set is
// fixed, so the label stays bounded.
const (
	// reasonNotAPush: a pull, a delete, a scan, a Helm chart: the action label says which.
	reasonNotAPush = "not_a_push"
	// reasonUnknownType: an event type or action promoter does not know (a registry newer
	// than promoter, or a format it does not read).
	reasonUnknownType = "unknown_type"
	// reasonPushFailed: a push the registry reports as failed (ECR's result FAILURE).
	reasonPushFailed = "push_failed"
	// reasonNotAManifest: a blob, or another media type that is no image manifest.
	reasonNotAManifest = "not_a_manifest"
	// reasonNoTag: a push by digest, or one that names no tag.
	reasonNoTag = "no_tag"
	// reasonSignatureTag: a cosign signature, attestation or referrers fallback tag.
	reasonSignatureTag = "signature_tag"
	// reasonNoPipeline: no pipeline stages to the repository path.
	reasonNoPipeline = "no_pipeline"
	// reasonAmbiguousPipeline: several pipelines stage to the path and the host the event
	// names (none, or another) does not tell which.
	reasonAmbiguousPipeline = "ambiguous_pipeline"
	// reasonOtherRegistry: the event names its registry exactly (ECR's account and region)
	// and no pipeline of the path stages there.
	reasonOtherRegistry = "other_registry"
	// reasonCacheTag: BuildKit exporting the build cache.
	reasonCacheTag = "cache_tag"
	// reasonNotArchTag: the merged index, or a tag that is no arch tag of the pipeline.
	reasonNotArchTag = "not_arch_tag"
	// reasonInvalidRevision: an arch tag whose revision breaks types.ValidateRevision
	// (outcome invalid).
	reasonInvalidRevision = "invalid_revision"
	// reasonHandshake: a webhook validation (Event Grid's SubscriptionValidationEvent).
	reasonHandshake = "handshake"

	// Source webhooks.
	reasonPing           = "ping"
	reasonRefDeleted     = "ref_deleted"
	reasonNotBranchOrTag = "not_branch_or_tag"
	reasonNotReleaseTag  = "not_release_tag"
)

// IgnoreReasons are every value of the reason label but "" (the kept, duplicate and
// rejected outcomes), for documentation and tests.
func IgnoreReasons() []string {
	return []string{
		reasonNotAPush, reasonUnknownType, reasonPushFailed, reasonNotAManifest, reasonNoTag, reasonSignatureTag,
		reasonNoPipeline, reasonAmbiguousPipeline, reasonOtherRegistry, reasonCacheTag, reasonNotArchTag,
		reasonInvalidRevision, reasonHandshake, reasonPing, reasonRefDeleted, reasonNotBranchOrTag, reasonNotReleaseTag,
	}
}

// The "event ignored" log line is written at most ignoredLogBurst times per
// ignoredLogWindow; the first line of a later window says how many were left out. Every
// event is counted whatever the limit.
const (
	ignoredLogBurst  = 20
	ignoredLogWindow = time.Minute
)

// logLimit is the rate limit of one receiver's "event ignored" lines.
type logLimit struct {
	mu      sync.Mutex
	start   time.Time
	logged  int
	dropped int
}

// allow says whether a line may be written now, and how many lines were dropped in the
// windows before, to report once.
func (l *logLimit) allow(now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= ignoredLogWindow || now.Before(l.start) {
		l.start, l.logged = now, 0
	}
	if l.logged >= ignoredLogBurst {
		l.dropped++
		return false, 0
	}
	l.logged++
	dropped, l.dropped = l.dropped, 0
	return true, dropped
}

// logIgnored writes the "event ignored" line of an event acknowledged and not kept (at
// warn for an invalid revision), within the rate limit. attrs say what the event named
// (repository, tag); never a secret or a request URL.
func (r *Receiver) logIgnored(source, action, outcome, reason string, attrs ...any) {
	ok, dropped := r.ignoredLog.allow(r.now())
	if !ok {
		return
	}
	if dropped > 0 {
		r.log.Info("ignored events not logged (rate limit; all are counted in promoter_events_received_total)", "dropped", dropped)
	}
	args := append([]any{"source", source, "action", action, "outcome", outcome, "reason", reason}, attrs...)
	if outcome == "invalid" {
		r.log.Warn("event ignored", args...)
		return
	}
	r.log.Info("event ignored", args...)
}
