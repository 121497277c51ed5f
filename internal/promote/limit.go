package promote

import (
	"context"
	"slices"
	"sync"

	"golang.org/x/sync/semaphore"
)

// limits are the request slots per registry host, shared by every promotion of one
// Promoter.
type limits struct {
	jobs  int64
	mu    sync.Mutex
	hosts map[string]*semaphore.Weighted
}

func newLimits(jobs int) *limits {
	return &limits{jobs: int64(jobs), hosts: map[string]*semaphore.Weighted{}}
}

// acquire takes one request slot on each of hosts (a host named twice takes two slots, as a
// same-registry upload holds a download and an upload open at once) and returns the release
// function. Slots are taken in host order, so two callers never wait on each other in a
// cycle; each host allows jobs slots.
func (l *limits) acquire(ctx context.Context, hosts ...string) (func(), error) {
	want := map[string]int64{}
	for _, h := range hosts {
		want[h]++
	}
	keys := make([]string, 0, len(want))
	for h := range want {
		keys = append(keys, h)
	}
	slices.Sort(keys)
	var held []func()
	release := func() {
		for _, r := range held {
			r()
		}
	}
	for _, h := range keys {
		sem := l.host(h)
		n := min(want[h], l.jobs)
		if err := sem.Acquire(ctx, n); err != nil {
			release()
			return nil, err
		}
		held = append(held, func() { sem.Release(n) })
	}
	return release, nil
}

func (l *limits) host(h string) *semaphore.Weighted {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.hosts[h]
	if !ok {
		s = semaphore.NewWeighted(l.jobs)
		l.hosts[h] = s
	}
	return s
}
