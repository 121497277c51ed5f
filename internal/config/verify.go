package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
)

// kmsSchemes are the KMS key references cosign knows; the sign package cannot verify with
// them yet.
var kmsSchemes = []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://"}

// trustedRootHint says where a trusted root comes from: promoter never fetches the
// public-good one itself.
const trustedRootHint = "set verify.trustedRoot to a sigstore trusted_root.json (cosign trusted-root create, or the public-good root from https://tuf-repo-cdn.sigstore.dev)"

// validateVerify checks pipelines[].verify, and refuses a merge-only pipeline that would
// sign whatever is pushed to its staging repository. Nothing is read: the sign package
// loads the keys and the trusted root when the daemon starts.
func validateVerify(ps *problems, at func(string) string, p Pipeline) {
	v := p.Verify
	pre := ""
	if p.Name != "" {
		pre = "pipeline " + p.Name + ": "
	}
	var keyless []string
	for j, s := range v.Signers {
		sp := at(fmt.Sprintf("verify.signers[%d]", j))
		identity := s.Issuer != "" || s.Subject != "" || s.SubjectRegexp != ""
		switch {
		case s.Key == "" && !identity:
			ps.add(sp, "%sa signer is a public key (key: a PEM file, env://NAME or k8s://namespace/name) or a keyless identity (issuer, with subject or subjectRegexp); this one sets neither key nor issuer", pre)
		case s.Key != "" && identity:
			ps.add(sp, "%ssets key and a keyless identity (issuer, subject, subjectRegexp), but a signer is exactly one of the two: list the key and the identity as two signers", pre)
		case s.Key != "":
			checkVerifyKey(ps, sp+".key", pre, s.Key)
		default:
			keyless = append(keyless, fmt.Sprintf("verify.signers[%d]", j))
			checkIdentity(ps, sp, pre, s)
		}
	}
	switch {
	case len(keyless) > 0 && v.TrustedRoot == "":
		ps.add(at("verify.trustedRoot"), "%smust be set: keyless signers (%s) are checked against a sigstore trusted root, and promoter does not fetch the public-good one; %s", pre, strings.Join(keyless, ", "), trustedRootHint)
	case len(keyless) == 0 && v.TrustedRoot != "":
		// An error rather than a silent no-op, as for every other key nothing would read.
		ps.add(at("verify.trustedRoot"), "%sis read only by keyless signers (issuer with subject or subjectRegexp), and none is listed: remove it, or add the keyless signer it is for", pre)
	}
	if len(v.Attestations) > 0 && len(v.Signers) == 0 {
		ps.add(at("verify.attestations"), "%sneed verify.signers: an attestation counts only when an accepted signer signed it", pre)
	}
	for j, a := range v.Attestations {
		if a.PredicateType == "" {
			ps.add(at(fmt.Sprintf("verify.attestations[%d].predicateType", j)), "%smust be set: the in-toto predicate type the image must carry, e.g. https://slsa.dev/provenance/v1", pre)
		}
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

// checkVerifyKey checks the form of a signer's key reference; the sign package reads it.
func checkVerifyKey(ps *problems, path, pre, key string) {
	for _, scheme := range kmsSchemes {
		if strings.HasPrefix(key, scheme) {
			ps.add(path, "%s%s is a KMS key, which is not supported yet as a verify signer: give its public key instead (cosign public-key --key %s > ci.pub) as a PEM file, env://NAME or k8s://namespace/name", pre, key, key)
			return
		}
	}
	if (strings.HasPrefix(key, "env:") && !strings.HasPrefix(key, "env://")) || strings.HasPrefix(key, "file:") {
		ps.add(path, "%s%q is a secret reference (env:NAME, file:/path), not a key reference: give a PEM file path, env://NAME or k8s://namespace/name", pre, key)
	}
}

// checkIdentity checks a keyless signer: an issuer, and exactly one of subject and
// subjectRegexp.
func checkIdentity(ps *problems, sp, pre string, s Signer) {
	if s.Issuer == "" {
		ps.add(sp+".issuer", "%smust be set for a keyless signer: the OIDC issuer of its certificate, e.g. https://token.actions.githubusercontent.com (GitHub Actions) or https://gitlab.com (GitLab CI)", pre)
	}
	switch {
	case s.Subject == "" && s.SubjectRegexp == "":
		ps.add(sp, "%sa keyless signer needs subject (one exact identity, e.g. https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main) or subjectRegexp; without either, every identity the issuer vouches for would be accepted", pre)
	case s.Subject != "" && s.SubjectRegexp != "":
		ps.add(sp, "%ssets both subject and subjectRegexp: set exactly one (subject for one identity, subjectRegexp for several)", pre)
	case s.SubjectRegexp != "":
		if _, err := regexp.Compile(s.SubjectRegexp); err != nil {
			ps.add(sp+".subjectRegexp", "%s%q is not a Go regular expression: %v", pre, s.SubjectRegexp, err)
		} else if !strings.HasPrefix(s.SubjectRegexp, "^") {
			ps.add(sp+".subjectRegexp", "%s%q must start with ^: it is matched anywhere in the identity, so unanchored it also accepts identities that merely contain it", pre, s.SubjectRegexp)
		}
	}
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
