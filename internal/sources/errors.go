package sources

import (
	"errors"
	"fmt"
)

// ErrBranchNotFound is a poll whose repository answered without the pipeline's branch.
var ErrBranchNotFound = errors.New("branch not found")

// ErrNotPolled is a Poll of a pipeline that is not polled (no source.poll, or unknown).
var ErrNotPolled = errors.New("pipeline is not polled")

// ErrSSHUnsupported is an ssh setup (GIT_SSH, GIT_SSH_COMMAND) that a poll cannot honour:
// another program, or an ssh option that would reach or trust servers in another way
// (-p, ProxyJump, a config file). The error's message says what to use instead.
var ErrSSHUnsupported = errors.New("ssh setup a poll cannot honour")

// ErrSSHCommand is a GIT_SSH_COMMAND that ssh itself would refuse: a bad option value, a
// flag without its value, a host where options go.
var ErrSSHCommand = errors.New("malformed GIT_SSH_COMMAND")

// ErrShellSyntax is a GIT_SSH_COMMAND with sh syntax beyond words, quotes and $VAR (it is
// split, not run by a shell), or with an unclosed quote.
var ErrShellSyntax = errors.New("sh syntax in GIT_SSH_COMMAND")

// ErrRepoURL is a source.repo a poll cannot list (a local path, another scheme), or one a
// source token would be sent to other than over http(s).
var ErrRepoURL = errors.New("source.repo a poll cannot list")

// ErrConfig is a poller's configuration that breaks a rule (a negative poll interval, a
// token for a pipeline that is not polled); the message names the setting.
var ErrConfig = errors.New("invalid source poll configuration")

// ruleError is an error whose message says what to fix, matched by errors.Is to the rule
// it breaks without the rule's text in the message.
type ruleError struct {
	rule error
	msg  string
}

func (e *ruleError) Error() string { return e.msg }
func (e *ruleError) Unwrap() error { return e.rule }

// ruleErrorf is a ruleError for rule, with the message format (which takes no %w) makes.
func ruleErrorf(rule error, format string, args ...any) error {
	return &ruleError{rule: rule, msg: fmt.Sprintf(format, args...)}
}
