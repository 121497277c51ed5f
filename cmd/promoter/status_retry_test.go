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

func TestReleaseLines(t *testing.T) {
	next := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	r := &types.Revision{
		Releases: map[string]types.Release{
			"v2": {},
			"v1": {Promotions: map[string]types.Promotion{
				"b.example/app": {Conflicted: true, Error: "b.example/app:v1 already points at sha256:other"},
				"a.example/app": {Done: true},
				"c.example/app": {Retry: types.Retry{Failures: 1, Error: "503", Next: next}},
			}},
			"v0": {Reason: "not promoted (any further): the revision is failed, see its reason"},
		},
	}
	want := []string{
		"release v0: not promoted (any further): the revision is failed, see its reason",
		"release v1: a.example/app done; b.example/app conflicted: b.example/app:v1 already points at sha256:other; c.example/app retrying",
		"release v2: waiting for the revision tag to reach a destination",
	}
	if diff := cmp.Diff(want, releaseLines(r)); diff != "" {
		t.Errorf("release lines (-want +got):\n%s", diff)
	}
	wantRetry := []string{"retrying release v1 to c.example/app: 1 failures, next attempt 2026-12-01T20:00:00Z: 503"}
	if diff := cmp.Diff(wantRetry, retryLines(r)); diff != "" {
		t.Errorf("retry lines (-want +got):\n%s", diff)
	}
}
