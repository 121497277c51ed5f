package bus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/registry"
)

// TestRetryDelay: a failed step comes back after about a second, then twice as late each
// time up to a minute, and never sooner than a registry's Retry-After or another replica's
// lease asks.
func TestRetryDelay(t *testing.T) {
	plain := errors.New("503 Service Unavailable")
	tests := []struct {
		name     string
		failures int
		err      error
		min, max time.Duration
	}{
		{"first failure", 1, plain, 500 * time.Millisecond, time.Second},
		{"second failure", 2, plain, time.Second, 2 * time.Second},
		{"fifth failure", 5, plain, 8 * time.Second, 16 * time.Second},
		{"capped", 40, plain, 30 * time.Second, time.Minute},
		{"Retry-After longer than the backoff", 1, fmt.Errorf("promoting: %w", &registry.RetryAfterError{After: 20 * time.Second}), 20 * time.Second, 20 * time.Second},
		{"Retry-After shorter than the backoff", 6, &registry.RetryAfterError{After: time.Second}, 16 * time.Second, 32 * time.Second},
		{"absurd Retry-After is capped", 1, &registry.RetryAfterError{After: 48 * time.Hour}, maxRetryAfter, maxRetryAfter},
		{"another replica's lease", 1, &merge.InProgressError{Owner: "b", Until: time.Now().Add(7 * time.Second)}, 6 * time.Second, 8 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 { // jitter: every draw must be in bounds
				if got := retryDelay(retryPolicy, tc.failures, tc.err); got < tc.min || got > tc.max {
					t.Fatalf("retryDelay(%d, %v) = %s, want within [%s, %s]", tc.failures, tc.err, got, tc.min, tc.max)
				}
			}
		})
	}
}
