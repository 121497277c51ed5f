package registry

import v1 "github.com/google/go-containerregistry/pkg/v1"

// BuildKit (and buildx) put each image's provenance and SBOM attestations in an
// "attestation manifest" next to it in the index: platform unknown/unknown, and these
// annotations naming what it is and which image it describes.
const (
	AnnotationReferenceType   = "vnd.docker.reference.type"
	AnnotationReferenceDigest = "vnd.docker.reference.digest"
	ReferenceTypeAttestation  = "attestation-manifest"
)

// IsAttestation reports whether an index entry is an attestation manifest rather than a
// runnable image: annotated as one, or without a real platform (unknown/unknown).
func IsAttestation(d v1.Descriptor) bool {
	if d.Annotations[AnnotationReferenceType] == ReferenceTypeAttestation {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// AttestationSubject is the digest of the image an attestation manifest describes, "" when
// it names none.
func AttestationSubject(d v1.Descriptor) string { return d.Annotations[AnnotationReferenceDigest] }
