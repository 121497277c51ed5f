package builders

import (
	"errors"
	"fmt"

	"github.com/promoter-dev/promoter/internal/types"
)

// ErrNoPlatforms is returned by NewAgent given no platform to build.
var ErrNoPlatforms = errors.New("builder agent: no platforms to build")

// ErrPlatformTwice is returned by NewAgent given one platform twice: the agent's consumers
// of one platform would overlap, which the builds work queue refuses.
var ErrPlatformTwice = errors.New("builder agent: platform listed twice")

// ErrUnknownPipeline is returned for an event or request naming a pipeline that is not in
// the configuration: the one types.ErrUnknownPipeline.
var ErrUnknownPipeline = types.ErrUnknownPipeline

// ErrMergeOnly is returned for a source change of a merge-only pipeline (one without
// source.repo): nothing builds it, CI pushes its arch tags.
var ErrMergeOnly = errors.New("merge-only pipeline")

// JobFailedError is a build Job that ended Failed, with what Kubernetes said about it.
type JobFailedError struct {
	Namespace, Job string
	// Reason and Message are those of the Job's Failed condition (for example
	// DeadlineExceeded, BackoffLimitExceeded).
	Reason, Message string
	// PodMessage is the build container's termination message (its last log lines with
	// the default template's FallbackToLogsOnError), when a pod could be read.
	PodMessage string
	// Cause is what of PodMessage the user must read (see failureCause): BuildKit's error
	// line and the failing step's output, with what to fix first when it is known. When it
	// is empty, Error gives PodMessage whole.
	Cause string
}

func (e *JobFailedError) Error() string {
	s := fmt.Sprintf("job %s/%s failed: %s", e.Namespace, e.Job, e.Reason)
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch {
	case e.Cause != "":
		s += "; " + e.Cause
	case e.PodMessage != "":
		s += "; build output: " + e.PodMessage
	}
	return s
}
