package promote

import (
	"context"
	"slices"

	"golang.org/x/sync/semaphore"
)

// acquire takes one request slot on each of hosts (a host named twice takes two slots, as a
// same-registry upload holds a download and an upload open at once) and returns the release
// function. Slots are taken in host order, so two callers never wait on each other in a
// cycle; each host allows Jobs slots, shared by every promotion of this Promoter.
func (p *Promoter) acquire(ctx context.Context, hosts ...string) (func(), error) {
	want := map[string]int64{}
	for _, h := range hosts {
		want[h]++
	}
	keys := make([]string, 0, len(want))
	for h := range want {
		keys = append(keys, h)
	}
	slices.Sort(keys)
	jobs := int64(p.jobs)
	var held []func()
	release := func() {
		for _, r := range held {
			r()
		}
	}
	for _, h := range keys {
		sem := p.host(h)
		n := min(want[h], jobs)
		if err := sem.Acquire(ctx, n); err != nil {
			release()
			return nil, err
		}
		held = append(held, func() { sem.Release(n) })
	}
	return release, nil
}

func (p *Promoter) host(h string) *semaphore.Weighted {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hosts == nil {
		p.hosts = map[string]*semaphore.Weighted{}
	}
	s, ok := p.hosts[h]
	if !ok {
		s = semaphore.NewWeighted(int64(p.jobs))
		p.hosts[h] = s
	}
	return s
}
