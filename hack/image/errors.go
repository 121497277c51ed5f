package main

import "errors"

// errUsage is a command line hack/image.sh cannot run: a missing repository, or flags
// that contradict each other. The error's message says which.
var errUsage = errors.New("usage")

// usageError is an errUsage whose message says what is wrong with the command line.
type usageError string

func (e usageError) Error() string { return string(e) }
func (e usageError) Unwrap() error { return errUsage }
