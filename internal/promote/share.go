package promote

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
)

// planCall is one read of a source and the promotions that wait for it.
type planCall struct {
	done  chan struct{} // closed when pl, blobs and err are set
	pl    *plan
	blobs *sourceBlobs
	err   error
	// parts counts the destinations that upload blobs, over every promotion sharing the
	// read; fan is their blob reads' fanout, made when the read is done (nil for fewer than
	// two).
	parts int
	fan   *fanout
}

// sources hands each target of one promotion its blobSource: its part of the fanout that
// the promotions sharing the plan share, or a direct read when it shares nothing.
type sources struct {
	blobs *sourceBlobs
	fan   *fanout
	first int // this promotion's first part in fan
	n     int // its parts: one per target, none for a dry run
}

// part is target i's blobSource; host is its destination's registry host.
func (s sources) part(i int, host string) blobSource {
	if s.fan == nil || i >= s.n {
		return direct{blobs: s.blobs, dstHost: host}
	}
	return &part{f: s.fan, i: s.first + i, host: host}
}

// leave withdraws every part of this promotion: it ends before any of its targets runs.
func (s sources) leave() {
	for i := range s.n {
		s.part(i, "").Done()
	}
}

// read reads src and everything attached to it. Concurrent promotions of the same source
// (the daemon promotes each destination as a step of its own, at once) share one read,
// and then each blob's download: parts is how many of the caller's targets upload blobs,
// and the sources returned give each of them its part. Nothing is kept after the read,
// so the next promotion reads the source again.
func (p *Promoter) read(ctx context.Context, src name.Reference, parts int) (*plan, sources, error) {
	key := src.String()
	p.mu.Lock()
	if c, ok := p.plans[key]; ok {
		first := c.parts
		c.parts += parts
		p.mu.Unlock()
		<-c.done
		if c.err != nil {
			return nil, sources{}, c.err
		}
		return c.pl, sources{blobs: c.blobs, fan: c.fan, first: first, n: parts}, nil
	}
	c := &planCall{done: make(chan struct{}), parts: parts}
	p.plans[key] = c
	p.mu.Unlock()

	c.pl, c.blobs, c.err = p.readSource(ctx, src)
	p.mu.Lock()
	delete(p.plans, key) // later promotions read the source again
	if c.err == nil && c.parts > 1 {
		c.fan = newFanout(c.parts, c.blobs)
	}
	p.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return nil, sources{}, c.err
	}
	return c.pl, sources{blobs: c.blobs, fan: c.fan, n: parts}, nil
}

// readSource reads the plan of src and prepares the reads of its blobs.
func (p *Promoter) readSource(ctx context.Context, src name.Reference) (*plan, *sourceBlobs, error) {
	pl, err := p.readPlan(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	blobs, err := p.reg.Blobs(ctx, src.Context())
	if err != nil {
		return nil, nil, sourceError(src, err)
	}
	return pl, &sourceBlobs{repo: src.Context(), blobs: blobs, limits: p.limits}, nil
}
