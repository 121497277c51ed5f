package builders

import (
	"testing"
	"time"
)

// This file is the package's only internal test: the others are in builders_test, because
// testenv imports the daemon, which imports this package.

func TestRetryDelay(t *testing.T) {
	a := &Agent{o: &options{retryDelay: 15 * time.Second}}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{1, 15 * time.Second}, {2, 30 * time.Second}, {3, time.Minute}, {10, maxRetryDelay}} {
		if got := a.retryDelay(tc.attempt); got < tc.want/2 || got > tc.want {
			t.Errorf("retryDelay(%d) = %s, want within [%s, %s] (jittered)", tc.attempt, got, tc.want/2, tc.want)
		}
	}
}
