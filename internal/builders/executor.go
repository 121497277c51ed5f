package builders

import (
	"context"

	"github.com/promoter-dev/promoter/internal/types"
)

// Executor builds one attempt of a request and pushes the result to req.Image. It blocks
// until the build ended and returns what ran it (a Job name for Kubernetes), also when the
// build failed, and on success the digest it pushed. Attempts start at 1.
type Executor interface {
	Build(ctx context.Context, req types.BuildRequest, attempt int) (Built, error)
}

// Built is what one build attempt reports.
type Built struct {
	// Job names what ran the build: the Job, or "local@<digest>".
	Job string
	// Digest is the manifest digest the build pushed under the request's image, as the
	// build itself reported it. A successful build always has one: it is the evidence
	// that binds the arch tag to this build (types.Evidence).
	Digest string
}

var (
	_ Executor = (*Kubernetes)(nil)
	_ Executor = (*Local)(nil)
)
