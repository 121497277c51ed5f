package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
)

// validateVerify checks pipelines[].verify: the policy's shape by its owner's rules
// (types.VerifyPolicy.Validate, which sign.NewPolicy applies too), each problem at its
// path, then what only the configuration decides: the spelling of a key reference, a
// trusted root nothing reads, the acceptUnverified opt-out, and the refusal of a
// merge-only pipeline that would sign whatever is pushed to its staging repository.
// Nothing is read: the sign package loads the keys and the trusted root when the daemon
// starts.
func validateVerify(ps *problems, at func(string) string, p Pipeline) {
	v := p.Verify
	pre := ""
	if p.Name != "" {
		pre = "pipeline " + p.Name + ": "
	}
	d := v.domain()
	var perr *types.PolicyError
	if errors.As(d.Validate(), &perr) {
		for _, pp := range perr.Problems {
			ps.add(at("verify."+pp.Field), "%s%s", pre, pp.Msg)
		}
	}
	keyless := false
	for j, s := range d.Signers {
		keyless = keyless || s.Keyless()
		if isSecretReference(s.Key) {
			ps.add(at(fmt.Sprintf("verify.signers[%d].key", j)), "%s%q is a secret reference (env:NAME, file:/path), not a key reference: give a PEM file path, env://NAME or k8s://namespace/name", pre, s.Key)
		}
	}
	if !keyless && v.TrustedRoot != "" {
		// An error rather than a silent no-op, as for every other key nothing would read.
		ps.add(at("verify.trustedRoot"), "%sis read only by keyless signers (issuer with subject or subjectRegexp), and none is listed: remove it, or add the keyless signer it is for", pre)
	}
	building := p.Source.Repo != ""
	if v.AcceptUnverified {
		path := at("verify.acceptUnverified")
		switch {
		case building:
			ps.add(path, "%sis for merge-only pipelines, and this one builds (source.repo is set): it merges its own builds, and images a verify signer signed; remove acceptUnverified", pre)
		case len(v.Signers) > 0:
			ps.add(path, "%scontradicts verify.signers: with signers an image must be signed by one of them to be merged; remove acceptUnverified", pre)
		case !p.Sign:
			ps.add(path, "%schanges nothing on a pipeline that does not sign (sign: false): its images are merged and promoted as unverified anyway; remove acceptUnverified", pre)
		}
	}
	if !building && p.Sign && len(v.Signers) == 0 && !v.AcceptUnverified {
		ps.add(at("verify"), "pipeline %s signs arch images nothing vouches for: it builds none (no source.repo) and lists no verify signers, so anyone who can push an arch tag to %s would get it signed with the production key and promoted. List the CI signers under pipelines[].verify.signers, or opt out explicitly with verify: {acceptUnverified: true}", p.Name, p.Staging)
	}
}

// isSecretReference reports whether key is spelt as a Secret (env:NAME, file:/path)
// rather than as a key reference (env://NAME).
func isSecretReference(key string) bool {
	return (strings.HasPrefix(key, "env:") && !strings.HasPrefix(key, "env://")) || strings.HasPrefix(key, "file:")
}

// domain is the policy as types.Pipeline carries it.
func (v Verify) domain() types.VerifyPolicy {
	d := types.VerifyPolicy{TrustedRoot: v.TrustedRoot, AcceptUnverified: v.AcceptUnverified}
	for _, s := range v.Signers {
		d.Signers = append(d.Signers, types.TrustedSigner{Key: s.Key, Issuer: s.Issuer, Subject: s.Subject, SubjectRegexp: s.SubjectRegexp})
	}
	for _, a := range v.Attestations {
		d.Attestations = append(d.Attestations, types.RequiredAttestation{PredicateType: a.PredicateType, BuilderID: a.BuilderID})
	}
	return d
}

// UnverifiedPipelines are the names of the pipelines that sign arch images without
// evidence (verify.acceptUnverified), in configuration order, for a warning at start.
func (c *Config) UnverifiedPipelines() []string {
	var names []string
	for _, p := range c.Pipelines {
		if p.Verify.AcceptUnverified {
			names = append(names, p.Name)
		}
	}
	return names
}
