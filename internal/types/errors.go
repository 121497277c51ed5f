package types

import (
	"errors"
	"fmt"
)

// ErrUnknownPipeline is what every handler returns for an event, a build result, a step
// or a build request naming a pipeline that is not in the configuration (it was removed,
// or renamed, after the message was stored). No retry can help: the daemon drops such a
// message, with a log line and a count (promoter_events_unknown_pipeline_total).
var ErrUnknownPipeline = errors.New("unknown pipeline")

// ErrLeaseHeld says another holder's merge lease (Revision.Merging) is live: the caller
// waits for it to expire before it tries to merge.
var ErrLeaseHeld = errors.New("merge lease held by another holder")

// ErrInvalidPlatform is wrapped by ParsePlatform's error for a string that is not
// "os/arch[/variant]" of a known platform.
var ErrInvalidPlatform = errors.New("invalid platform")

// ErrInvalidArchTag is matched by ArchTag.Validate's error: the pattern does not give one
// valid, distinct tag per platform for every revision. The error's text says what to fix.
var ErrInvalidArchTag = errors.New("invalid arch tag pattern")

// ErrInvalidCacheRef is matched by CacheRef.Validate's error: the pattern does not give
// one valid, distinct repository:tag per platform. The error's text says what to fix.
var ErrInvalidCacheRef = errors.New("invalid cache ref pattern")

// ruleError is the error of a value that breaks rule: its text is only the message that
// says what to fix (configuration validation shows it as it is), and it matches rule
// with errors.Is.
type ruleError struct {
	rule error
	msg  string
}

func (e *ruleError) Error() string { return e.msg }
func (e *ruleError) Unwrap() error { return e.rule }

// breaks is a ruleError of rule with the message format and args make.
func breaks(rule error, format string, args ...any) error {
	return &ruleError{rule: rule, msg: fmt.Sprintf(format, args...)}
}
