package status

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrNotFound is returned by Revision for a revision the daemon has no state of.
var ErrNotFound = errors.New("no state for this revision")

// ErrUnauthorized matches (errors.Is) the error of a request the daemon refused for its
// token: missing, or not the daemon's auth.statusToken.
var ErrUnauthorized = errors.New("the daemon refused the status token")

// ResponseError is a daemon's answer other than 200: its status, and the error its body
// gave. It matches ErrUnauthorized when the status is 401.
type ResponseError struct {
	StatusCode int
	Status     string // as the response has it, e.g. "401 Unauthorized"
	Message    string // the body's "error", possibly empty
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("daemon answered %s: %s", e.Status, e.Message)
}

// Is reports whether e is the refusal target names.
func (e *ResponseError) Is(target error) bool {
	return target == ErrUnauthorized && e.StatusCode == http.StatusUnauthorized
}
