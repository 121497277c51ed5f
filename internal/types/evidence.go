package types

import (
	"errors"
	"fmt"
	"time"
)

// ErrUntrusted is what every refusal of an arch image by a verify policy matches with
// errors.Is: no accepted signer signed it (or a required attestation is missing). An error
// that does not match it (a registry that did not answer) says nothing about the image and
// is retried.
var ErrUntrusted = errors.New("image not signed by a trusted signer")

// A promoter signature is a promise about where an image came from, so every arch image a
// merge takes in is accepted on recorded evidence, never on the push rights of whoever
// wrote its tag. The evidence rules of a pipeline:
//
//   - A pipeline that builds (Pipeline.Builds) merges the digest its own build reported
//     (BuildResult.Digest, kept as PlatformState.BuildDigest) and nothing else: an arch tag
//     that holds another digest once the build reported conflicts the revision
//     (Revision.BuildEvidence). An arch tag seen before any build result waits for one, up
//     to the builder's deadline; with a verify policy, an image no build was reported for
//     is accepted when a trusted signer signed it.
//   - A merge-only pipeline merges an image that verifies under its verify policy
//     (VerifyPolicy.Signers), or, with verify.acceptUnverified or when it does not sign,
//     any image, recorded as unverified.
//
// The evidence that let each platform in is kept in its PlatformState.Evidence, and shown
// by the status API, the page and `promoter status`.

// EvidenceKind says on what grounds an arch image was merged.
type EvidenceKind string

// The kinds of evidence.
const (
	// EvidenceBuild: promoter's own build (a Job, or the local executor) reported pushing
	// exactly this digest.
	EvidenceBuild EvidenceKind = "build"
	// EvidenceSignature: a signer of the pipeline's verify policy signed this digest.
	EvidenceSignature EvidenceKind = "signature"
	// EvidenceUnverified: accepted without evidence, because the pipeline does not sign or
	// its verify policy says acceptUnverified.
	EvidenceUnverified EvidenceKind = "unverified"
)

// Evidence is why one platform's image was accepted into a merge.
type Evidence struct {
	Kind EvidenceKind `json:"kind"`
	// Digest is the image the evidence is about.
	Digest string `json:"digest"`
	// Job is the build Job (or "local@<digest>") that pushed Digest, for EvidenceBuild.
	Job string `json:"job,omitempty"`
	// Signer names who signed Digest, for EvidenceSignature: a key ("key <ref> (SHA256:<fingerprint>)")
	// or a certificate identity ("<subject> from <issuer>").
	Signer string `json:"signer,omitempty"`
	// Detail adds what else was checked (a required attestation), or why nothing was.
	Detail string `json:"detail,omitempty"`
}

// String is the evidence as the status page and `promoter status` print it.
func (e Evidence) String() string {
	var s string
	switch e.Kind {
	case EvidenceBuild:
		s = fmt.Sprintf("built by promoter (job %s)", e.Job)
	case EvidenceSignature:
		s = "signed by " + e.Signer
	case EvidenceUnverified:
		s = "unverified"
	default:
		s = string(e.Kind)
	}
	if e.Detail != "" {
		s += "; " + e.Detail
	}
	return s
}

// BuildVerdict is what promoter's build records say about one platform's arch image.
type BuildVerdict int

// Build verdicts.
const (
	// NoBuild: no successful build of the platform was reported.
	NoBuild BuildVerdict = iota
	// BuiltHere: the arch tag holds the digest promoter's build reported.
	BuiltHere
	// BuiltElsewhere: promoter's build reported another digest than the tag holds: the tag
	// was pushed over after the build.
	BuiltElsewhere
)

// BuildVerdict compares platform key's recorded digest with the one promoter's last
// successful build of it reported.
func (r *Revision) BuildVerdict(key string) BuildVerdict {
	ps := r.Platforms[key]
	switch {
	case ps.Build != BuildSucceeded || ps.BuildDigest == "":
		return NoBuild
	case ps.BuildDigest == ps.Digest:
		return BuiltHere
	default:
		return BuiltElsewhere
	}
}

// BuildEvidence checks every platform of a pipeline that builds against promoter's build
// records. It returns the evidence of each platform built here, the platforms whose tag
// holds an image no build reported (waiting for a build result; a platform whose tag is
// absent is in neither), and, when a tag holds another digest than promoter's build
// pushed, the reason the revision conflicts. A pipeline that does not build has no build
// evidence.
func (r *Revision) BuildEvidence(p Pipeline, staging string) (built map[string]Evidence, waiting []string, conflict string) {
	built = map[string]Evidence{}
	if !p.Builds() {
		return built, nil, ""
	}
	for _, key := range p.Keys() {
		ps := r.Platforms[key]
		switch r.BuildVerdict(key) {
		case BuiltHere:
			built[key] = Evidence{Kind: EvidenceBuild, Digest: ps.Digest, Job: ps.Job}
		case BuiltElsewhere:
			return nil, nil, fmt.Sprintf("%s:%s holds %s, but promoter's build of %s (job %s) pushed %s: the arch tag was pushed over after the build; promoter signs only what it built",
				staging, ps.Tag, ps.Digest, key, ps.Job, ps.BuildDigest)
		default:
			if ps.Digest != "" {
				waiting = append(waiting, key)
			}
		}
	}
	return built, waiting, ""
}

// BuildOverdue fails a revision of a pipeline that builds whose arch tags hold images no
// build of promoter's reported, once wait has passed since they were pushed (at is now).
// waiting are the platforms without a build (BuildEvidence). It changes nothing before
// the wait is over, or for a revision merged or stopped.
func (r *Revision) BuildOverdue(staging string, waiting []string, wait time.Duration, at time.Time) error {
	if r.Index != "" || r.Terminal() || len(waiting) == 0 {
		return ErrNoChange
	}
	var last time.Time
	for _, key := range waiting {
		if pushed := r.Platforms[key].Pushed; pushed.After(last) {
			last = pushed
		}
	}
	if r.Received.After(last) {
		last = r.Received
	}
	if at.Sub(last) < wait {
		return ErrNoChange
	}
	key := waiting[0]
	ps := r.Platforms[key]
	r.stop(PhaseFailed, fmt.Sprintf("%s:%s holds %s, but no build of promoter's reported it within %s: a pipeline that builds merges only its own builds (push a source change to build the revision, or sign the image with a signer of pipelines[].verify)",
		staging, ps.Tag, ps.Digest, wait), at)
	return nil
}
