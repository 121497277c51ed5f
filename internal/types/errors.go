package types

import "errors"

// ErrUnknownPipeline is what every handler returns for an event, a build result, a step
// or a build request naming a pipeline that is not in the configuration (it was removed,
// or renamed, after the message was stored). No retry can help: the daemon drops such a
// message, with a log line and a count (promoter_events_unknown_pipeline_total).
var ErrUnknownPipeline = errors.New("unknown pipeline")

// ErrLeaseHeld says another holder's merge lease (Revision.Merging) is live: the caller
// waits for it to expire before it tries to merge.
var ErrLeaseHeld = errors.New("merge lease held by another holder")
