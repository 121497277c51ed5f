package builders

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/types"
)

// This file is the package's only internal test: the others are in builders_test, because
// testenv imports the daemon, which imports this package.

// TestAgentConsumer: a platform's consumer of the builds work queue carries the agent's
// options, and its retry schedule starts at the retry delay, doubles per failed attempt
// and stops at maxRetryDelay.
func TestAgentConsumer(t *testing.T) {
	o, err := newOptions([]Option{WithMaxAttempts(4), WithAckWait(time.Minute), WithConcurrency(3), WithRetryDelay(15 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	c := (&Agent{o: o}).consumer(types.MustPlatform("linux/arm/v7"))
	type knobs struct {
		WorkQueue           bool
		Durable, Subject    string
		Parallel            int
		Timeout, AckWait    time.Duration
		MaxDeliver          int
		HasHandle, HasParse bool
	}
	want := knobs{WorkQueue: true, Durable: "builder-linux-arm-v7", Subject: "promoter.builds.linux.arm.v7", Parallel: 3,
		Timeout: bus.NoTimeout, AckWait: time.Minute, MaxDeliver: 5, HasHandle: true}
	got := knobs{c.WorkQueue, c.Durable, c.Subject, c.Parallel, c.Timeout, c.AckWait, c.MaxDeliver, c.Handle != nil, c.Parse != nil}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("consumer (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{1, 15 * time.Second}, {2, 30 * time.Second}, {3, time.Minute}, {10, maxRetryDelay}} {
		// Failed attempt n is followed by the policy's delay n-1 (bus.Consumer.Retry).
		if got := c.Retry.Delay(tc.attempt - 1); got < tc.want/2 || got > tc.want {
			t.Errorf("delay after attempt %d = %s, want within [%s, %s] (jittered)", tc.attempt, got, tc.want/2, tc.want)
		}
	}
}
