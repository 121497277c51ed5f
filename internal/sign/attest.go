package sign

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	intotov1 "github.com/in-toto/attestation/go/v1"
	"github.com/sigstore/cosign/v3/pkg/oci"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/promoter-dev/promoter/internal/types"
)

// legacyPredicateTypeAnnotation is the layer annotation cosign's legacy (.att tag)
// attestations name their predicate type with.
const legacyPredicateTypeAnnotation = "predicateType"

// attested checks each required attestation of t and describes them for the evidence
// ("" when none is required). signer signed the image.
func (p *Policy) attested(ctx context.Context, t target, refs []referrer, signer accepted) (string, error) {
	var details []string
	for _, req := range p.attestations {
		detail, whys, err := p.attestation(ctx, t, refs, req, signer)
		if err != nil {
			return "", fmt.Errorf("verifying attestation %s of %s: %w", req.PredicateType, t.digest, err)
		}
		if detail == "" {
			return "", p.untrusted(t, attestationWhy(req, whys))
		}
		details = append(details, detail)
	}
	return strings.Join(details, "; "), nil
}

// attestation looks for req among t's bundle referrers, then, for key signers, under its
// legacy sha256-<hex>.att tag (only read when no bundle satisfies req). It returns the
// evidence detail, or ("", why each attestation of that predicate type found was
// refused): none found when whys is empty. signer signed the image; the zero accepted
// when there is no signature to compare with, so the detail always names who attested.
func (p *Policy) attestation(ctx context.Context, t target, refs []referrer, req types.RequiredAttestation, signer accepted) (detail string, whys []string, err error) {
	for _, r := range refs {
		switch {
		case r.reason != "" && r.annotated == req.PredicateType:
			whys = append(whys, fmt.Sprintf("bundle %s: %s", r.digest, r.reason))
		case r.reason != "" || r.predicateType() != req.PredicateType:
		default:
			who, why := p.bundleSigner(ctx, r.bundle)
			if why == "" {
				detail, why = matchAttestation(t, r.statement, r.subjects, req, who, signer)
			}
			if why == "" {
				return detail, nil, nil
			}
			whys = append(whys, why)
		}
	}
	if len(p.keys) > 0 {
		detail, legacy, err := p.legacyAttestation(ctx, t, req, signer)
		if err != nil || detail != "" {
			return detail, nil, err
		}
		whys = append(whys, legacy...)
	}
	return "", whys, nil
}

// attestationWhy says why req is not met, given why each attestation of its predicate
// type was refused (none found when whys is empty).
func attestationWhy(req types.RequiredAttestation, whys []string) string {
	if len(whys) == 0 {
		return fmt.Sprintf("attestation %s missing: no signed in-toto statement of that predicate type about this digest", req.PredicateType)
	}
	return fmt.Sprintf("attestation %s not accepted: %s", req.PredicateType, summarize(whys))
}

// matchAttestation checks a verified statement by who against req: its subject is t's
// digest and, when req names one, its builder is req's.
func matchAttestation(t target, st *intotov1.Statement, subjects []string, req types.RequiredAttestation, who, signer accepted) (detail, why string) {
	if !slices.Contains(subjects, t.digest.DigestStr()) {
		return "", fmt.Sprintf("an attestation by %s is about %s: it was copied from another image", who.name, strings.Join(subjects, ", "))
	}
	by := ""
	if who.name != signer.name {
		by = ", signed by " + who.name
	}
	if req.BuilderID == "" {
		return fmt.Sprintf("attestation %s%s", req.PredicateType, by), ""
	}
	got := builderID(st)
	switch {
	case got == "":
		return "", fmt.Sprintf("an attestation by %s names no builder id (predicate runDetails.builder.id or builder.id), want %s", who.name, req.BuilderID)
	case got != req.BuilderID:
		return "", fmt.Sprintf("an attestation by %s names builder %s, want %s", who.name, got, req.BuilderID)
	}
	return fmt.Sprintf("attestation %s by builder %s%s", req.PredicateType, got, by), ""
}

// builderID is the SLSA provenance's builder id: predicate.runDetails.builder.id in v1,
// predicate.builder.id in v0.2.
func builderID(st *intotov1.Statement) string {
	if id := field(st.GetPredicate(), "runDetails", "builder", "id"); id != "" {
		return id
	}
	return field(st.GetPredicate(), "builder", "id")
}

// field is the string at path in s, "" when there is none.
func field(s *structpb.Struct, path ...string) string {
	v := structpb.NewStructValue(s)
	for _, k := range path {
		v = v.GetStructValue().GetFields()[k]
	}
	return v.GetStringValue()
}

// legacyAttestation looks for req under t's sha256-<hex>.att tag, where cosign attest
// --key writes attestations in its legacy format: each layer a DSSE envelope, its
// predicate type in a layer annotation. Only keys can verify them here.
func (p *Policy) legacyAttestation(ctx context.Context, t target, req types.RequiredAttestation, signer accepted) (detail string, whys []string, err error) {
	opts := ociOptions(t.digest, p.reg.Remote(ctx))
	tag, err := ociremote.AttestationTag(t.digest, opts...)
	if err != nil {
		return "", nil, fmt.Errorf("naming the attestation tag of %s: %w", t.digest, err)
	}
	atts, err := ociremote.Signatures(tag, opts...)
	if err != nil {
		return "", nil, fmt.Errorf("reading attestations %s: %w", tag, err)
	}
	list, err := atts.Get()
	if err != nil {
		return "", nil, fmt.Errorf("reading attestations %s: %w", tag, err)
	}
	for i, att := range list {
		if ann, err := att.Annotations(); err != nil || ann[legacyPredicateTypeAnnotation] != req.PredicateType {
			continue
		}
		who, st, why, err := p.legacyStatement(att)
		if err != nil {
			return "", nil, fmt.Errorf("reading %s layer %d: %w", tag, i, err)
		}
		if why == "" && st.GetPredicateType() != req.PredicateType {
			why = fmt.Sprintf("its statement's predicate type is %s", st.GetPredicateType())
		}
		if why == "" {
			detail, why = matchAttestation(t, st, statementSubjects(st), req, who, signer)
		}
		if why == "" {
			return detail, nil, nil
		}
		whys = append(whys, fmt.Sprintf("%s layer %d: %s", tag, i, why))
	}
	return "", whys, nil
}

// legacyStatement verifies a legacy attestation layer's DSSE envelope with each key of
// the policy and returns the signer and the statement, or why none verifies.
func (p *Policy) legacyStatement(att oci.Signature) (accepted, *intotov1.Statement, string, error) {
	env, err := att.Payload()
	if err != nil {
		return accepted{}, nil, "", err
	}
	for _, k := range p.keys {
		var payload []byte
		v := sigdsse.WrapVerifier(k.v, sigdsse.WithDecodedPayload(&payload), sigdsse.WithExpectedPayloadType(ctypes.IntotoPayloadType))
		if v.VerifySignature(bytes.NewReader(env), nil) != nil {
			continue
		}
		var st intotov1.Statement
		if err := protojson.Unmarshal(payload, &st); err != nil {
			return accepted{}, nil, fmt.Sprintf("payload signed by %s is not an in-toto statement: %v", k.name, err), nil
		}
		return k.accepted, &st, "", nil
	}
	return accepted{}, nil, "an attestation that verifies with no key of the policy", nil
}

// statementSubjects are the subject digests of st, "alg:hex".
func statementSubjects(st *intotov1.Statement) []string {
	var out []string
	for _, s := range st.GetSubject() {
		for alg, hex := range s.GetDigest() {
			out = append(out, alg+":"+hex)
		}
	}
	return out
}
