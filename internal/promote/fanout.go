package promote

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// fanout shares one read of each source blob among the destinations that upload it: the
// targets of every promotion of one source that runs at once and shares its plan (one
// Promote call with several targets, or the daemon's steps, one per destination). The blob is downloaded
// once and streamed to every destination's upload session at once, at the pace of the
// slowest. Promoting to three registries then reads the source once, where three
// separate copies read it three times.
//
// Destinations are numbered, each with its part (the blobSource its blob copier was built
// with). Each says which blobs it may upload (Expect) before it asks for any, and leaves
// (Done) when it is done, failed or not. The download of a blob starts once every
// destination has said so and every one that expected the blob has joined its upload
// (Open) or withdrawn (Skip: the blob was there already, or mounted). A destination that asks after the shared download started (a retry, after
// its part failed) uploads on its own, with a download of its own; so does every retry,
// whatever failed.
//
// Nobody waits long for another: a blob's download starts at most joinGrace after its
// first part joined, with the parts there by then. A destination still deciding (its
// registry slow, or refusing and being retried) uploads on its own later, so a sick
// registry delays the others by joinGrace at most.
type fanout struct {
	blobs *sourceBlobs

	mu      sync.Mutex
	pending int // destinations that have not said yet what they may upload
	groups  map[v1.Hash]*group
	// expected is, per destination, the blobs it may still join or withdraw from.
	expected map[int]map[v1.Hash]bool
}

// joinGrace bounds how long a blob's first part waits for the other destinations.
const joinGrace = time.Second

// group is one blob's shared upload.
type group struct {
	desc    v1.Descriptor
	waiting int // destinations expected to join or withdraw
	joined  []*joiner
	started bool
	grace   *time.Timer // started by the first part to join
	// uploads counts the joined parts whose upload has not returned: the download holds
	// their request slots until then, as a part's own upload would (direct.Open).
	uploads sync.WaitGroup
}

// joiner is one destination's part of a group: its host (where it holds a request slot
// during the download) and the pipe the shared download writes into.
type joiner struct {
	host  string
	body  *io.PipeReader
	start chan struct{} // closed when the download starts (body is set then)
	// finish tells the group this part's upload returned (once); set when it starts.
	finish func()
}

func newFanout(destinations int, blobs *sourceBlobs) *fanout {
	return &fanout{blobs: blobs, pending: destinations, groups: map[v1.Hash]*group{}, expected: map[int]map[v1.Hash]bool{}}
}

// expect registers the blobs d may upload. It is called once per destination, before any
// of its uploads.
func (f *fanout) expect(d int, blobs []v1.Descriptor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.expected[d]; ok {
		return
	}
	f.pending--
	mine := map[v1.Hash]bool{}
	for _, b := range blobs {
		g := f.groups[b.Digest]
		if g == nil {
			g = &group{desc: b}
			f.groups[b.Digest] = g
		}
		g.waiting++
		mine[b.Digest] = true
	}
	f.expected[d] = mine
	if f.pending == 0 {
		for _, g := range f.groups {
			f.maybeStart(g)
		}
	}
}

// leave withdraws d from every blob it has not joined yet (registering it as expecting
// nothing if it never called expect): its promotion is over, or failed before its blobs.
func (f *fanout) leave(d int) {
	f.expect(d, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	for dg := range f.expected[d] {
		f.withdrawLocked(d, dg)
	}
}

// withdraw says d will not upload blob dg: the destination has it, or mounted it.
func (f *fanout) withdraw(d int, dg v1.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.withdrawLocked(d, dg)
}

func (f *fanout) withdrawLocked(d int, dg v1.Hash) {
	if !f.expected[d][dg] {
		return
	}
	delete(f.expected[d], dg)
	g := f.groups[dg]
	g.waiting--
	f.maybeStart(g)
}

// open returns desc's bytes for destination d on host: its part of the blob's shared
// download when d is expected in its group, else a download of its own.
func (f *fanout) open(ctx context.Context, d int, host string, desc v1.Descriptor) (io.ReadCloser, error) {
	f.mu.Lock()
	g := f.groups[desc.Digest]
	if !f.expected[d][desc.Digest] || g == nil || g.started || embedded(desc) {
		f.withdrawLocked(d, desc.Digest)
		f.mu.Unlock()
		return direct{blobs: f.blobs, dstHost: host}.Open(ctx, desc)
	}
	delete(f.expected[d], desc.Digest)
	j := &joiner{host: host, start: make(chan struct{})}
	g.joined = append(g.joined, j)
	g.waiting--
	if g.grace == nil {
		g.grace = time.AfterFunc(joinGrace, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.start(g)
		})
	}
	f.maybeStart(g)
	f.mu.Unlock()

	select {
	case <-j.start:
		return partBody{j}, nil
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		if !g.started {
			g.joined = slices.DeleteFunc(g.joined, func(o *joiner) bool { return o == j })
			if len(g.joined) == 0 && g.grace != nil {
				g.grace.Stop()
				g.grace = nil // the next part to join starts its own
			}
			f.maybeStart(g)
			return nil, ctx.Err()
		}
		// Started meanwhile: closing the pipe drops this part.
		j.body.CloseWithError(ctx.Err())
		j.finish()
		return nil, ctx.Err()
	}
}

// partBody is one destination's end of a shared download; closing it (its upload
// returned) drops the destination from the download and gives back its request slot.
type partBody struct{ j *joiner }

func (b partBody) Read(p []byte) (int, error) { return b.j.body.Read(p) }

func (b partBody) Close() error {
	err := b.j.body.CloseWithError(errPartDone)
	b.j.finish()
	return err
}

// errPartDone ends a destination's pipe once its upload returned: the shared download
// writes to the others only.
var errPartDone = errors.New("this destination's upload is over")

// maybeStart starts g's download once nobody is left to join it. Called with f.mu held.
func (f *fanout) maybeStart(g *group) {
	if g.waiting > 0 || f.pending > 0 {
		return
	}
	f.start(g)
}

// start starts g's download with the parts that joined, unless it started or has none.
// Called with f.mu held.
func (f *fanout) start(g *group) {
	if g.started || len(g.joined) == 0 {
		return
	}
	g.started = true
	if g.grace != nil {
		g.grace.Stop()
	}
	writers := make([]*io.PipeWriter, len(g.joined))
	g.uploads.Add(len(g.joined))
	for i, j := range g.joined {
		j.body, writers[i] = io.Pipe()
		j.finish = sync.OnceFunc(g.uploads.Done)
	}
	go g.broadcast(f.blobs, writers)
}

// broadcast downloads the blob once and writes it to every part's pipe, holding a
// request slot on the source and on each destination host meanwhile (as one upload
// does). A part whose upload ended is dropped; the download ends when none is left.
func (g *group) broadcast(blobs *sourceBlobs, writers []*io.PipeWriter) {
	hosts := []string{blobs.repo.RegistryStr()}
	for _, j := range g.joined {
		hosts = append(hosts, j.host)
	}
	// The parts' own contexts end their uploads; the download stops when every pipe is
	// closed, so it needs no deadline of its own beyond the transfers'.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release, err := blobs.limits.acquire(ctx, hosts...)
	// The parts send their uploads only now, once the slots are held (or failed to be):
	// an upload waiting for its body is a request in flight.
	g.startUploads()
	if err != nil {
		closeAll(writers, err)
		return
	}
	// The slots are the uploads' too: a destination's request is in flight until its
	// upload returns, which may be well after the last byte was written to its pipe.
	defer func() {
		g.uploads.Wait()
		release()
	}()
	body, err := blobs.download(ctx, g.desc)
	if err != nil {
		closeAll(writers, err)
		return
	}
	defer body.Close()
	buf := make([]byte, 256<<10)
	live := len(writers)
	for live > 0 {
		n, err := body.Read(buf)
		for i, w := range writers {
			if w == nil || n == 0 {
				continue
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				writers[i], live = nil, live-1
			}
		}
		if err == io.EOF {
			closeAll(writers, nil)
			return
		}
		if err != nil {
			closeAll(writers, err)
			return
		}
	}
}

// startUploads lets every joined part start its upload.
func (g *group) startUploads() {
	for _, j := range g.joined {
		close(j.start)
	}
}

func closeAll(writers []*io.PipeWriter, err error) {
	for _, w := range writers {
		if w != nil {
			w.CloseWithError(err)
		}
	}
}

// part is destination i's blobSource in a fanout.
type part struct {
	f    *fanout
	i    int
	host string // the destination's registry host
}

func (p *part) Expect(blobs []v1.Descriptor) { p.f.expect(p.i, blobs) }

func (p *part) Open(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	return p.f.open(ctx, p.i, p.host, desc)
}

func (p *part) Skip(d v1.Hash) { p.f.withdraw(p.i, d) }
func (p *part) Done()          { p.f.leave(p.i) }
