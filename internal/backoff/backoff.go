// Package backoff owns how promoter waits between tries of anything that failed or is not
// ready yet: a registry request, a bus publish, a consumer, a state compare-and-swap, a
// build, a tag that has not settled. Every retry loop takes its waits from a Policy here,
// so they all grow, cap and spread the same way.
//
// It must not decide whether to retry, only how long to wait.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: Min before the first retry, doubling per retry,
// capped at Max.
type Policy struct {
	Min, Max time.Duration
	// Jitter spreads each wait with "equal jitter" (half fixed, half random), so that many
	// clients failing together do not come back together. Polls of one's own progress
	// leave it off.
	Jitter bool
}

// Delay is the wait before retry number retry+1 (retry counts from 0).
func (p Policy) Delay(retry int) time.Duration {
	d := p.Min
	for i := 0; i < retry && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, max(p.Max, p.Min))
	if !p.Jitter {
		return d
	}
	half := d / 2
	return half + rand.N(half+1)
}

// Sleep waits d or until ctx ends, whichever comes first; it returns ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
