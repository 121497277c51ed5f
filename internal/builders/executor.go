package builders

import (
	"context"
	"fmt"

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
	_ Executor = Router{}
)

// Router sends each request to the executor of its pipeline, so one agent can serve
// pipelines built by different executors (the all-in-one mode: local pipelines in-process,
// the others through Jobs).
type Router struct {
	// ByPipeline maps a pipeline name to its executor.
	ByPipeline map[string]Executor
	// Default builds pipelines not in ByPipeline; nil refuses them.
	Default Executor
}

// Build implements Executor.
func (r Router) Build(ctx context.Context, req types.BuildRequest, attempt int) (string, error) {
	if e, ok := r.ByPipeline[req.Pipeline]; ok {
		return e.Build(ctx, req, attempt)
	}
	if r.Default == nil {
		return "", fmt.Errorf("%w: no executor for pipeline %q on this agent", ErrPermanent, req.Pipeline)
	}
	return r.Default.Build(ctx, req, attempt)
}
