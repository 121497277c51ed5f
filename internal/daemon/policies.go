package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/promoter-dev/promoter/internal/kube"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/types"
)

// policies are the pipelines' verify policies (pipelines[].verify), loaded once at start
// so that a key or trusted root that cannot be read stops the daemon before it accepts an
// event. The merger and the dispatcher take them as their own small interfaces.
type policies map[string]*sign.Policy

// loadPolicies loads the verify policy of every pipeline that has signers, and warns of
// each pipeline that signs arch images without evidence (verify.acceptUnverified).
func loadPolicies(ctx context.Context, pipelines []types.Pipeline, reg registry.Client, log *slog.Logger) (policies, error) {
	out := policies{}
	for _, p := range pipelines {
		if p.Verify.AcceptUnverified {
			log.Warn("UNVERIFIED: this pipeline signs and promotes whatever is pushed under its arch tags; anyone who may push to its staging repository gets their image signed (pipelines[].verify.acceptUnverified)",
				"pipeline", p.Name, "staging", p.Staging)
		}
		if !p.Verify.Enabled() {
			continue
		}
		var refs []string
		for _, s := range p.Verify.Signers {
			refs = append(refs, s.Key)
		}
		kc, err := kube.ForKeys("promoter", refs...)
		if err != nil {
			return nil, fmt.Errorf("pipelines[%s].verify: %w", p.Name, err)
		}
		policy, err := sign.NewPolicy(ctx, p.Verify, reg, kc)
		if err != nil {
			return nil, fmt.Errorf("pipelines[%s].verify: %w", p.Name, err)
		}
		out[p.Name] = policy
	}
	return out, nil
}

// byPipeline gives the policies as one user's interface (merge.Policy, builders.Policy).
func byPipeline[P any](ps policies, as func(*sign.Policy) P) map[string]P {
	out := make(map[string]P, len(ps))
	for name, p := range ps {
		out[name] = as(p)
	}
	return out
}
