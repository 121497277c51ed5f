package builders

import (
	"context"

	"github.com/promoter-dev/promoter/internal/types"
)

// Executor builds one attempt of a request and pushes the result to req.Image. It blocks
// until the build ended and returns the name of what ran it (a Job name for Kubernetes),
// also when the build failed. Attempts start at 1.
type Executor interface {
	Build(ctx context.Context, req types.BuildRequest, attempt int) (job string, err error)
}

var (
	_ Executor = (*Kubernetes)(nil)
	_ Executor = (*Local)(nil)
)
