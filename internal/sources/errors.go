package sources

import "errors"

// ErrBranchNotFound is a poll whose repository answered without the pipeline's branch.
var ErrBranchNotFound = errors.New("branch not found")

// ErrNotPolled is a Poll of a pipeline that is not polled (no source.poll, or unknown).
var ErrNotPolled = errors.New("pipeline is not polled")
