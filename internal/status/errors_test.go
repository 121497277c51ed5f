package status

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// TestResponseError: a daemon's refusal keeps the daemon's words in its message, and only
// a 401 is ErrUnauthorized, also when wrapped.
func TestResponseError(t *testing.T) {
	for _, tc := range []struct {
		name             string
		err              error
		wantMsg          string
		wantUnauthorized bool
	}{
		{name: "401", err: &ResponseError{StatusCode: http.StatusUnauthorized, Status: "401 Unauthorized", Message: "token please"},
			wantMsg: "daemon answered 401 Unauthorized: token please", wantUnauthorized: true},
		{name: "wrapped 401", err: fmt.Errorf("listing: %w", &ResponseError{StatusCode: http.StatusUnauthorized, Status: "401 Unauthorized"}),
			wantMsg: "listing: daemon answered 401 Unauthorized: ", wantUnauthorized: true},
		{name: "403", err: &ResponseError{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Message: "no"},
			wantMsg: "daemon answered 403 Forbidden: no"},
		{name: "500", err: &ResponseError{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error", Message: "nats: no responders"},
			wantMsg: "daemon answered 500 Internal Server Error: nats: no responders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.wantMsg {
				t.Errorf("got message %q, want %q", got, tc.wantMsg)
			}
			if got := errors.Is(tc.err, ErrUnauthorized); got != tc.wantUnauthorized {
				t.Errorf("errors.Is(%v, ErrUnauthorized): got %v, want %v", tc.err, got, tc.wantUnauthorized)
			}
			if errors.Is(tc.err, ErrNotFound) {
				t.Errorf("errors.Is(%v, ErrNotFound): got true, want false", tc.err)
			}
		})
	}
}
