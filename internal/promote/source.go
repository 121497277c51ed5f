package promote

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/promoter-dev/promoter/internal/registry"
)

// blobSource gives one destination the bytes of the source blobs it uploads. The
// destination says once which blobs it may upload (Expect), then for each either opens it
// (Open) or says it needs no upload (Skip: the destination has it, or mounted it), and
// says Done at the end, failed or not. Two implementations: direct reads each blob for this
// destination alone; a fanout part shares one read of each blob with the other
// destinations of the same source (fanout.go).
type blobSource interface {
	Expect(blobs []v1.Descriptor)
	// Open returns desc's bytes, holding a request slot on the source host and on the
	// destination's until closed, so that transfers never wait on each other in a cycle.
	Open(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error)
	Skip(d v1.Hash)
	Done()
}

var (
	_ blobSource = direct{}
	_ blobSource = (*part)(nil)
)

// sourceBlobs reads the blobs of the source repository (authenticated for pull), for
// every destination of a promotion.
type sourceBlobs struct {
	repo   name.Repository
	blobs  *registry.Blobs
	limits *limits
}

// download opens the source blob.
func (s *sourceBlobs) download(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	return s.blobs.Get(ctx, desc)
}

// direct is the blobSource of a destination that shares no read: every Open downloads.
type direct struct {
	blobs   *sourceBlobs
	dstHost string
}

func (direct) Expect([]v1.Descriptor) {}
func (direct) Skip(v1.Hash)           {}
func (direct) Done()                  {}

// Open streams desc from the source, holding a request slot on both hosts while bytes
// flow from one to the other.
func (d direct) Open(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	release, err := d.blobs.limits.acquire(ctx, d.blobs.repo.RegistryStr(), d.dstHost)
	if err != nil {
		return nil, err
	}
	if embedded(desc) {
		// Small blobs embedded in the manifest need no download.
		return &releasing{ReadCloser: io.NopCloser(bytes.NewReader(desc.Data)), release: release}, nil
	}
	body, err := d.blobs.download(ctx, desc)
	if err != nil {
		release()
		return nil, err
	}
	return &releasing{ReadCloser: body, release: release}, nil
}

// releasing gives its request slots back when closed.
type releasing struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (r *releasing) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(r.release)
	return err
}

// embedded reports whether desc carries its bytes (the OCI empty config): uploading it
// needs no download.
func embedded(desc v1.Descriptor) bool {
	return int64(len(desc.Data)) == desc.Size && desc.Size > 0
}
