package types

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Pipeline is one configured pipeline as the domain packages see it: parsed and validated
// once, when the configuration is loaded (config.Load), never re-parsed per
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
// (pipelines[].verify). Validate checks its shape; the keys and the trusted root it names
// are read by the sign package.
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

// Validate checks the policy's shape: every signer (TrustedSigner.Validate), a trusted
// root when a signer is keyless, signers when attestations are required, and a predicate
// type on each attestation. A policy without signers or attestations is valid: it
// verifies nothing (see Enabled). The error is a *PolicyError listing every problem,
// its fields spelled as pipelines[].verify spells them ("signers[1].issuer",
// "trustedRoot").
func (v VerifyPolicy) Validate() error {
	var e PolicyError
	var keyless []string
	for i, s := range v.Signers {
		at := fmt.Sprintf("signers[%d]", i)
		e.addAll(at, s.Validate())
		if s.Keyless() {
			keyless = append(keyless, at)
		}
	}
	if len(keyless) > 0 && v.TrustedRoot == "" {
		e.add("trustedRoot", "must be set: keyless signers (%s) are checked against a sigstore trusted root, and promoter does not fetch the public-good one; set it to a sigstore trusted_root.json (cosign trusted-root create, or the public-good root from https://tuf-repo-cdn.sigstore.dev)", strings.Join(keyless, ", "))
	}
	if len(v.Attestations) > 0 && len(v.Signers) == 0 {
		e.add("attestations", "need signers: an attestation counts only when an accepted signer signed it")
	}
	for i, a := range v.Attestations {
		if a.PredicateType == "" {
			e.add(fmt.Sprintf("attestations[%d].predicateType", i), "must be set: the in-toto predicate type the image must carry, e.g. https://slsa.dev/provenance/v1")
		}
	}
	return e.err()
}

// TrustedSigner is one accepted signer of arch images: a public key, or a keyless
// identity (a Fulcio certificate's OIDC issuer and subject). Validate checks it is
// exactly one of the two.
type TrustedSigner struct {
	// Key is a public key: a PEM file, env://NAME or k8s://namespace/name. KMS URIs
	// (awskms://, gcpkms://, azurekms://, hashivault://) are refused by Validate: they
	// cannot verify yet.
	Key string
	// Issuer is the OIDC issuer of a keyless signer's certificate
	// (cosign's --certificate-oidc-issuer).
	Issuer string
	// Subject or SubjectRegexp is the certificate's identity (cosign's
	// --certificate-identity and --certificate-identity-regexp). SubjectRegexp is a Go
	// regular expression starting with ^: as cosign's, it is matched anywhere in the
	// identity.
	Subject       string
	SubjectRegexp string
}

// Keyless reports whether the signer is a certificate identity: it names no key, and an
// issuer, subject or subjectRegexp. A signer that names nothing is neither a key nor
// keyless (Validate refuses it).
func (s TrustedSigner) Keyless() bool {
	return s.Key == "" && (s.Issuer != "" || s.Subject != "" || s.SubjectRegexp != "")
}

// Validate checks the signer is exactly one of a key and a keyless identity; an identity with an issuer and exactly one of subject and subjectRegexp,
// the regexp compiling and starting with ^. The error is a *PolicyError whose fields are
// the signer's ("key", "issuer", "subjectRegexp"; "" for the signer as a whole).
func (s TrustedSigner) Validate() error {
	var e PolicyError
	switch {
	case s.Key == "" && !s.Keyless():
		e.add("", "a signer is a public key (key: a PEM file, env://NAME or k8s://namespace/name) or a keyless identity (issuer, with subject or subjectRegexp); this one sets neither key nor issuer")
	case s.Key != "" && s.Issuer+s.Subject+s.SubjectRegexp != "":
		e.add("", "sets key and a keyless identity (issuer, subject, subjectRegexp), but a signer is exactly one of the two: list the key and the identity as two signers")
	case s.Key != "":
		// A file, env://, k8s:// or KMS reference: the sign package loads it at start.
	default:
		s.validateIdentity(&e)
	}
	return e.err()
}

// validateIdentity checks a keyless signer: an issuer, and exactly one of subject and
// subjectRegexp.
func (s TrustedSigner) validateIdentity(e *PolicyError) {
	if s.Issuer == "" {
		e.add("issuer", "must be set for a keyless signer: the OIDC issuer of its certificate, e.g. https://token.actions.githubusercontent.com (GitHub Actions) or https://gitlab.com (GitLab CI)")
	}
	switch {
	case s.Subject == "" && s.SubjectRegexp == "":
		e.add("", "a keyless signer needs subject (one exact identity, e.g. https://github.com/acme/web/.github/workflows/images.yml@refs/heads/main) or subjectRegexp; without either, every identity the issuer vouches for would be accepted")
	case s.Subject != "" && s.SubjectRegexp != "":
		e.add("", "sets both subject and subjectRegexp: set exactly one (subject for one identity, subjectRegexp for several)")
	case s.SubjectRegexp != "":
		if _, err := regexp.Compile(s.SubjectRegexp); err != nil {
			e.add("subjectRegexp", "%q is not a Go regular expression: %v", s.SubjectRegexp, err)
		} else if !strings.HasPrefix(s.SubjectRegexp, "^") {
			e.add("subjectRegexp", "%q must start with ^: it is matched anywhere in the identity, so unanchored it also accepts identities that merely contain it", s.SubjectRegexp)
		}
	}
}

// String names the signer in messages.
func (s TrustedSigner) String() string {
	switch {
	case s.Key != "":
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

// ErrInvalidPolicy is what every error of VerifyPolicy.Validate and
// TrustedSigner.Validate is (errors.Is).
var ErrInvalidPolicy = errors.New("invalid verify policy")

// PolicyError lists every problem of a verify policy or signer, so that all of them can
// be fixed in one go.
type PolicyError struct {
	Problems []PolicyProblem
}

// PolicyProblem is one thing wrong with a verify policy.
type PolicyProblem struct {
	// Field is where, relative to what was validated and spelled as pipelines[].verify
	// spells it: "signers[1].issuer", "trustedRoot", "attestations[0].predicateType";
	// "" for the whole of what was validated.
	Field string
	// Msg says what is wrong and what to do about it.
	Msg string
}

func (e *PolicyError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Msg
		if p.Field != "" {
			parts[i] = p.Field + ": " + p.Msg
		}
	}
	return strings.Join(parts, "; ")
}

// Is makes a *PolicyError ErrInvalidPolicy.
func (e *PolicyError) Is(target error) bool { return target == ErrInvalidPolicy }

func (e *PolicyError) add(field, format string, args ...any) {
	e.Problems = append(e.Problems, PolicyProblem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// addAll adds the problems of err, a *PolicyError or nil, under field at.
func (e *PolicyError) addAll(at string, err error) {
	var sub *PolicyError
	if !errors.As(err, &sub) {
		return
	}
	for _, p := range sub.Problems {
		field := at
		if p.Field != "" {
			field += "." + p.Field
		}
		e.add(field, "%s", p.Msg)
	}
}

// err is e as an error: nil without problems.
func (e *PolicyError) err() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
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
	// Executor runs the builds: builder agents with Jobs, or the daemon in-process.
	Executor Executor
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

// Executor is what runs a pipeline's builds (pipelines[].build.executor).
type Executor string

// The executors.
const (
	// ExecutorKubernetes runs each build as a BuildKit Job, created by the builder agents
	// (promoter builder). It is the default.
	ExecutorKubernetes Executor = "kubernetes"
	// ExecutorLocal builds in the daemon's own process: the source tree as a layer on a
	// base image, for development and promoter dev.
	ExecutorLocal Executor = "local"
)

// Executors are the executors, the default first.
var Executors = []Executor{ExecutorKubernetes, ExecutorLocal}

// ErrUnknownExecutor is the error of ParseExecutor for a name that is no executor.
var ErrUnknownExecutor = errors.New("unknown executor")

// ParseExecutor parses an executor's name. The default (ExecutorKubernetes) is the
// configuration's to fill in: "" is no executor.
func ParseExecutor(s string) (Executor, error) {
	for _, e := range Executors {
		if string(e) == s {
			return e, nil
		}
	}
	return "", fmt.Errorf("%w: %q is not one of kubernetes, local", ErrUnknownExecutor, s)
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
