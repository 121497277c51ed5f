package types

import (
	"fmt"
	"time"
)

// Pipeline is one configured pipeline as the domain packages see it: parsed and validated
// once, when the configuration is loaded (config.Pipeline.Domain), never re-parsed per
// event. It is declarative data, passed by value.
//
// A pipeline with a Source builds its arch tags from the git repository on each push; one
// without is merge-only (see Builds): CI pushes the arch tags to Staging, and promoter
// merges, signs and promotes them all the same.
type Pipeline struct {
	Name string
	// Source is the git repository whose pushes trigger builds; its zero value makes the
	// pipeline merge-only, and then Build is zero too.
	Source Source
	// Platforms are built and merged, in this order.
	Platforms []Platform
	Build     BuildSpec
	// Staging is the repository arch tags are pushed to and the index is merged in.
	Staging Repository
	// ArchTag names each platform's tag of a revision.
	ArchTag ArchTag
	// Sign signs the merged index and its children.
	Sign bool
	// Verify is the trust policy of the arch images: whose signature lets an image no build
	// of promoter's pushed into a merge (see evidence.go).
	Verify  VerifyPolicy
	Promote []Destination
}

// VerifyPolicy says which arch images a pipeline accepts besides its own builds
// (pipelines[].verify).
type VerifyPolicy struct {
	// Signers are the accepted signers; an image is accepted when any one of them signed
	// its digest (and it carries the required attestations).
	Signers []TrustedSigner
	// TrustedRoot is a sigstore trusted_root.json (Fulcio CAs, timestamp authorities,
	// transparency logs) that keyless signers are checked against.
	TrustedRoot string
	// Attestations are required on top of a signature: each must be a signed in-toto
	// attestation of the image by an accepted signer.
	Attestations []RequiredAttestation
	// AcceptUnverified merges any image of a merge-only pipeline that signs, without
	// evidence: the explicit opt-out of the check, logged as a warning at start.
	AcceptUnverified bool
}

// Enabled reports whether the policy verifies anything.
func (v VerifyPolicy) Enabled() bool { return len(v.Signers) > 0 }

// TrustedSigner is one accepted signer of arch images: a public key, or a keyless
// identity (a Fulcio certificate's OIDC issuer and subject).
type TrustedSigner struct {
	// Key is a public key: a PEM file, env://NAME, k8s://namespace/name or a KMS URI.
	Key string
	// Issuer is the OIDC issuer of a keyless signer's certificate
	// (cosign's --certificate-oidc-issuer).
	Issuer string
	// Subject or SubjectRegexp is the certificate's identity (cosign's
	// --certificate-identity and --certificate-identity-regexp).
	Subject       string
	SubjectRegexp string
}

// Keyless reports whether the signer is a certificate identity rather than a key.
func (s TrustedSigner) Keyless() bool { return s.Key == "" }

// String names the signer in messages.
func (s TrustedSigner) String() string {
	switch {
	case !s.Keyless():
		return "key " + s.Key
	case s.SubjectRegexp != "":
		return fmt.Sprintf("identity matching %q from %s", s.SubjectRegexp, s.Issuer)
	default:
		return fmt.Sprintf("identity %s from %s", s.Subject, s.Issuer)
	}
}

// RequiredAttestation is an in-toto attestation an accepted image must carry.
type RequiredAttestation struct {
	// PredicateType is the statement's predicate type, e.g. https://slsa.dev/provenance/v1.
	PredicateType string
	// BuilderID, when set, must equal the SLSA provenance's builder id
	// (runDetails.builder.id in v1, builder.id in v0.2).
	BuilderID string
}

// Source is the git repository and branch a pipeline follows.
type Source struct {
	// Repo is the repository's URL, as webhooks name it and BuildKit fetches it.
	Repo   string
	Branch string
	// Poll is how often the branch head is listed (git ls-remote) to catch a push whose
	// webhook was lost; 0 never polls.
	Poll time.Duration
	// ReleaseTags are the git tags of Repo that are releases; none when empty.
	ReleaseTags ReleaseTags
}

// BuildSpec says how a pipeline's platforms are built.
type BuildSpec struct {
	// Executor is "kubernetes" (builder agents run Jobs) or "local" (in-process).
	Executor string
	// Context and Dockerfile are paths inside the source tree.
	Context, Dockerfile string
	// Base and Dir are the local executor's base image and source tree.
	Base, Dir string
	// GitSecret, Args and Secrets are what BuildRequest carries (see there).
	GitSecret string
	Args      []string
	Secrets   []BuildSecret
	// Cache is the registry build cache's reference pattern, "" without a cache; CacheMode
	// is BuildKit's export mode (min or max).
	Cache     CacheRef
	CacheMode string
	// Provenance is BuildKit's attest:provenance value, "" for none.
	Provenance string
}

// Destination is one repository a pipeline promotes to.
type Destination struct {
	To Repository
	// RequireSignature verifies the source before anything is copied.
	RequireSignature bool
	// MutableTags may be moved to a new revision (for example latest); no other tag is.
	MutableTags []string
}

// Builds reports whether promoter builds the pipeline's arch tags: it does when the
// pipeline has a source repository. A pipeline without one is merge-only: nothing is ever
// dispatched for it and source webhooks never match it; the arch tags someone else pushes
// (a CI job per platform) are merged, signed and promoted as any others.
func (p Pipeline) Builds() bool { return p.Source.Repo != "" }

// Keys are the pipeline's platforms as revision state keys them (Platform.String()), in
// its order.
func (p Pipeline) Keys() []string {
	keys := make([]string, len(p.Platforms))
	for i, pl := range p.Platforms {
		keys[i] = pl.String()
	}
	return keys
}

// ArchTags are the arch tags of revision, keyed by platform.
func (p Pipeline) ArchTags(revision string) map[string]string {
	return p.ArchTag.Tags(revision, p.Platforms)
}

// Destinations are the repositories the pipeline promotes to, in its order.
func (p Pipeline) Destinations() []string {
	out := make([]string, len(p.Promote))
	for i, d := range p.Promote {
		out[i] = string(d.To)
	}
	return out
}

// Destination finds the destination promoting to repository to.
func (p Pipeline) Destination(to string) (Destination, bool) {
	for _, d := range p.Promote {
		if string(d.To) == to {
			return d, true
		}
	}
	return Destination{}, false
}

// HasPlatform reports whether the pipeline builds pl.
func (p Pipeline) HasPlatform(pl Platform) bool {
	for _, q := range p.Platforms {
		if q == pl {
			return true
		}
	}
	return false
}
