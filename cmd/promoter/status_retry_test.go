package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/types"
)

func TestRetryLines(t *testing.T) {
	next := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	r := &types.Revision{
		SignRetry: types.Retry{Failures: 2, Error: "503 Service Unavailable", Next: next},
		Promotions: map[string]types.Promotion{
			"b.example/app": {Retry: types.Retry{Failures: 1, Error: "429, retry after 30s", Next: next}},
			"a.example/app": {Done: true, Retry: types.Retry{Failures: 3}},
		},
	}
	want := []string{
		"retrying signing: 2 failures, next attempt 2026-12-01T20:00:00Z: 503 Service Unavailable",
		"retrying promotion to b.example/app: 1 failures, next attempt 2026-12-01T20:00:00Z: 429, retry after 30s",
	}
	if diff := cmp.Diff(want, retryLines(r)); diff != "" {
		t.Errorf("retry lines (-want +got):\n%s", diff)
	}
	if got := retryLines(&types.Revision{}); got != nil {
		t.Errorf("a revision without failures: got %q, want none", got)
	}
}
