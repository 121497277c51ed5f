package merge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// Policy checks an arch image ("repo@sha256:...") against a pipeline's verify policy
// (sign.Policy). A refusal wraps types.ErrUntrusted; any other error means the check could
// not be made and is retried.
type Policy interface {
	Verify(ctx context.Context, ref string) (types.Evidence, error)
}

// DefaultBuildWait is how long an arch tag of a pipeline that builds may hold an image no
// build of promoter's reported before the revision fails (WithBuildWait); the daemon
// passes builder.deadline.
const DefaultBuildWait = time.Hour

// verdict is what the evidence says of a claimed revision: merge its inputs, stop it
// (phase and reason), or wait for build results (waiting).
type verdict struct {
	inputs map[string]types.MergeInput
	phase  types.Phase // "" to merge; failed or conflicted to stop
	reason string
	// untrusted: failed because a policy refused an image; retried once it accepts it.
	untrusted bool
	// waiting are the platforms whose images wait for a build result to vouch for them.
	waiting []string
}

// vouch finds the evidence of every platform of rev, which is complete (every platform has
// a digest). The rules are in types/evidence.go: a pipeline that builds merges the digests
// its builds reported, and an image no build reported waits for one unless a signer of
// the pipeline's policy signed it; a merge-only pipeline merges what its policy accepts,
// or, without a policy (it does not sign, or it accepts unverified images), anything.
func (m *Merger) vouch(ctx context.Context, p types.Pipeline, rev *types.Revision) (verdict, error) {
	v := verdict{inputs: map[string]types.MergeInput{}}
	built, _, conflict := rev.BuildEvidence(p, string(p.Staging))
	if conflict != "" {
		v.phase, v.reason = types.PhaseConflicted, conflict
		return v, nil
	}
	for key, ev := range built {
		v.inputs[key] = types.MergeInput{Digest: ev.Digest, Evidence: &ev}
	}
	for _, key := range p.Keys() {
		if _, ok := built[key]; ok {
			continue
		}
		ps := rev.Platforms[key]
		ev, err := m.vouchFor(ctx, p, ps)
		switch {
		case errors.Is(err, types.ErrUntrusted) && p.Builds():
			// Its build may still push over it: wait for that, or for the deadline.
			v.waiting = append(v.waiting, key)
			m.log.Info("arch image not trusted; waiting for promoter's build", "pipeline", p.Name,
				"revision", rev.Revision, "platform", key, "reason", err.Error())
			continue
		case errors.Is(err, types.ErrUntrusted):
			v.phase, v.reason, v.untrusted = types.PhaseFailed, err.Error(), true
			return v, nil
		case err != nil:
			return v, err
		}
		v.inputs[key] = types.MergeInput{Digest: ps.Digest, Evidence: &ev}
	}
	return v, nil
}

// vouchFor is the evidence of one platform's image that no build of promoter's reported.
func (m *Merger) vouchFor(ctx context.Context, p types.Pipeline, ps types.PlatformState) (types.Evidence, error) {
	ref := p.Staging.Digest(ps.Digest)
	policy, ok := m.policies[p.Name]
	switch {
	case ok:
		ev, err := policy.Verify(ctx, ref)
		if err != nil && !errors.Is(err, types.ErrUntrusted) {
			return ev, fmt.Errorf("verifying %s (%s:%s) against pipeline %s's verify policy: %w", ref, p.Staging, ps.Tag, p.Name, err)
		}
		return ev, err
	case p.Builds():
		return types.Evidence{}, fmt.Errorf("%w: %s:%s holds %s, which no build of promoter's reported", types.ErrUntrusted, p.Staging, ps.Tag, ps.Digest)
	case p.Verify.AcceptUnverified:
		return types.Evidence{Kind: types.EvidenceUnverified, Digest: ps.Digest, Detail: "the pipeline's verify.acceptUnverified is set"}, nil
	case p.Sign && p.Verify.Enabled():
		return types.Evidence{}, fmt.Errorf("pipeline %s has a verify policy but no verifier was loaded for it", p.Name)
	case p.Sign:
		// Config validation refuses this; a merger built without it must not sign on no evidence.
		return types.Evidence{}, fmt.Errorf("%w: pipeline %s signs, but has no verify policy to accept %s by", types.ErrUntrusted, p.Name, ps.Digest)
	default:
		return types.Evidence{Kind: types.EvidenceUnverified, Digest: ps.Digest, Detail: "the pipeline does not sign"}, nil
	}
}

// awaitsBuild reports whether a revision of a pipeline that builds has an arch image that
// only a build result can vouch for (no build reported it, and the pipeline has no policy
// that could): nothing to claim until that result comes.
func (m *Merger) awaitsBuild(p types.Pipeline, r *types.Revision) (waiting []string) {
	if !p.Builds() {
		return nil
	}
	if _, ok := m.policies[p.Name]; ok {
		return nil
	}
	_, waiting, conflict := r.BuildEvidence(p, string(p.Staging))
	if conflict != "" {
		return nil // the claim records the conflict
	}
	return waiting
}
