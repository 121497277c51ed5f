package sign

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	intotov1 "github.com/in-toto/attestation/go/v1"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/promoter-dev/promoter/internal/registry"
)

// bundleMediaTypePrefix starts the artifactType of every sigstore bundle referrer
// ("application/vnd.dev.sigstore.bundle.v0.3+json" for what cosign v3 writes).
const bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"

// writeBundle signs d the way `cosign sign --key K --tlog-upload=false` does in cosign
// v3's default (new bundle) format: an in-toto statement whose subject is d and whose
// predicate type is https://sigstore.dev/cosign/sign/v1, in a DSSE envelope, in a v0.3
// sigstore bundle whose only verification material is the public key hint (no
// transparency log entry, no timestamp), pushed as an OCI 1.1 referrer of d. On
// registries without the referrers API, go-containerregistry also maintains the
// sha256-<hex> fallback tag index, which is where cosign looks there.
func writeBundle(ctx context.Context, reg registry.Client, kp *keypair, w *witnesses, d name.Digest) error {
	return writeStatement(ctx, reg, kp, w, d, ctypes.CosignSignPredicateType, &structpb.Struct{})
}

// writeStatement is writeBundle for any predicate: what `cosign attest --key K
// --tlog-upload=false --predicate P --type T` writes in the new bundle format (the
// referrer annotated with the predicate type).
func writeStatement(ctx context.Context, reg registry.Client, kp *keypair, w *witnesses, d name.Digest, predicateType string, predicate *structpb.Struct) error {
	payload, err := statementPayload(d, predicateType, predicate)
	if err != nil {
		return err
	}
	// Without witnesses: no trusted root, certificate provider, transparency log or
	// timestamp authority, the options cosign's bundle.SignData ends up with for a key
	// and --tlog-upload=false. With them, what --timestamp-server-url and a Rekor v2
	// signing config add.
	opts := sgsign.BundleOptions{Context: ctx}
	w.apply(&opts, kp)
	b, err := sgsign.Bundle(&sgsign.DSSEData{Data: payload, PayloadType: inTotoPayloadType}, kp, opts)
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	return pushBundle(ctx, reg, d, b, predicateType)
}

// inTotoPayloadType is the DSSE payload type of an in-toto statement.
const inTotoPayloadType = "application/vnd.in-toto+json"

// statementPayload is the in-toto statement about d that a bundle's DSSE envelope signs:
// subject = d, as cosign writes it.
func statementPayload(d name.Digest, predicateType string, predicate *structpb.Struct) ([]byte, error) {
	alg, hex, ok := strings.Cut(d.DigestStr(), ":")
	if !ok {
		return nil, fmt.Errorf("digest %s: want algorithm:hex", d.DigestStr())
	}
	statement := &intotov1.Statement{
		Type:          intotov1.StatementTypeUri,
		Subject:       []*intotov1.ResourceDescriptor{{Digest: map[string]string{alg: hex}}},
		PredicateType: predicateType,
		Predicate:     predicate,
	}
	payload, err := protojson.Marshal(statement)
	if err != nil {
		return nil, fmt.Errorf("encoding the statement for %s: %w", d, err)
	}
	return payload, nil
}

// pushBundle pushes b as a bundle referrer of d with cosign's own
// ociremote.WriteAttestationNewBundleFormat.
func pushBundle(ctx context.Context, reg registry.Client, d name.Digest, b *protobundle.Bundle, predicateType string) error {
	raw, err := protojson.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding the bundle for %s: %w", d, err)
	}
	opts, err := writeOptions(ctx, reg, d)
	if err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", d.DigestStr(), d.Context(), err)
	}
	if err := ociremote.WriteAttestationNewBundleFormat(d, raw, predicateType, opts...); err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", d.DigestStr(), d.Context(), err)
	}
	return nil
}

// checkBundles looks at the sigstore bundle referrers of t. Bundles that are not
// signatures (attestations with other predicate types) are not counted.
func checkBundles(ctx context.Context, reg registry.Client, v signature.Verifier, t target) (check, error) {
	var c check
	bundles, err := readBundles(ctx, reg, t, isSignatureType)
	if err != nil {
		return c, err
	}
	for _, sb := range bundles {
		subjects, isSig, reason := verifyBundle(ctx, v, sb.raw)
		if !isSig {
			continue
		}
		c.stored++
		switch {
		case reason != "":
			c.reason = fmt.Sprintf("bundle %s: %s", sb.digest, reason)
		case slices.Contains(subjects, t.digest.DigestStr()):
			c.ok = true
			return c, nil
		default:
			c.other = strings.Join(subjects, ", ")
		}
	}
	return c, nil
}

// storedBundle is one sigstore bundle referrer of a digest, as read from the registry.
type storedBundle struct {
	digest    v1.Hash // of the referrer manifest
	annotated string  // its dev.sigstore.bundle.predicateType annotation, if any
	raw       []byte  // the bundle; nil when the manifest is not one bundle layer
}

// readBundles reads the sigstore bundle referrers of t whose predicate type want
// accepts: the referrer's dev.sigstore.bundle.predicateType annotation, or "" for a
// referrer without one (whose statement then decides). Filtering on the annotation
// spares downloading attestations nobody asked for (an SBOM can be megabytes).
func readBundles(ctx context.Context, reg registry.Client, t target, want func(predicateType string) bool) ([]storedBundle, error) {
	idx, err := reg.Referrers(t.digest, reg.Remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", t.digest, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", t.digest, err)
	}
	var out []storedBundle
	for _, m := range im.Manifests {
		pt := m.Annotations[ociremote.BundlePredicateType]
		if !strings.HasPrefix(m.ArtifactType, bundleMediaTypePrefix) || !want(pt) {
			continue
		}
		raw, err := readBundleLayer(ctx, reg, t.digest.Context().Digest(m.Digest.String()))
		if err != nil {
			return nil, err
		}
		out = append(out, storedBundle{digest: m.Digest, annotated: pt, raw: raw})
	}
	return out, nil
}

// isSignatureType accepts the bundles that may be cosign signatures: those whose
// annotation says so, and those without an annotation.
func isSignatureType(predicateType string) bool {
	return predicateType == "" || predicateType == ctypes.CosignSignPredicateType
}

// readBundleLayer reads the one bundle layer of a referrer manifest. A manifest of
// another shape yields nil bytes, which verifyBundle reports as unreadable.
func readBundleLayer(ctx context.Context, reg registry.Client, ref name.Digest) ([]byte, error) {
	img, err := remote.Image(ref, reg.Remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading signature manifest %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading signature manifest %s: %w", ref, err)
	}
	if len(layers) != 1 {
		return nil, nil
	}
	if mt, err := layers[0].MediaType(); err != nil || !strings.HasPrefix(string(mt), bundleMediaTypePrefix) {
		return nil, nil
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		return nil, fmt.Errorf("reading signature bundle %s: %w", ref, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading signature bundle %s: %w", ref, err)
	}
	return raw, nil
}

// verifyBundle checks a bundle's DSSE signature with v, the way `cosign verify --key
// --insecure-ignore-tlog` does (cosign.VerifyNewBundle: key trust, no tlog, no
// timestamps), and returns the digests its statement signs. isSig is false for a
// well-formed bundle that is not a cosign signature (another predicate type); reason
// is set when the bundle is unreadable or its signature does not verify.
func verifyBundle(ctx context.Context, v signature.Verifier, raw []byte) (subjects []string, isSig bool, reason string) {
	ob, reason := openBundle(raw)
	if reason != "" {
		return nil, true, reason
	}
	if !ob.isSignature() {
		return nil, false, ""
	}
	// The statement's subject is compared by the caller, so the error says which digest
	// it names instead of sigstore-go's generic mismatch.
	if err := verifyKeyBundle(ctx, v, ob.bundle); err != nil {
		return nil, true, err.Error()
	}
	if len(ob.subjects) == 0 {
		return nil, true, "statement names no subject digest"
	}
	return ob.subjects, true, ""
}

// verifyKeyBundle checks b's signature with the public key v and nothing else: no
// transparency log, no timestamps, no subject (the caller compares it). These are the
// sigstore-go options cosign's VerifyNewBundle builds for a key with IgnoreTlog (the
// key, valid at any time, as the only trusted material; no observer timestamps).
func verifyKeyBundle(_ context.Context, v signature.Verifier, b *sgbundle.Bundle) error {
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	trusted := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	verifier, err := verify.NewVerifier(trusted, verify.WithNoObserverTimestamps())
	if err != nil {
		return fmt.Errorf("configuring the bundle verifier: %w", err)
	}
	_, err = verifier.Verify(b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithKey()))
	return err
}

// openedBundle is a parsed sigstore bundle and what its DSSE statement claims, before
// anything is verified: nothing in it may be trusted until its signature is.
type openedBundle struct {
	bundle *sgbundle.Bundle
	// statement is the in-toto statement of the envelope, nil when the payload is not one.
	statement *intotov1.Statement
	// subjects are the statement's subject digests, "alg:hex".
	subjects []string
}

// openBundle parses a stored bundle; reason says why it cannot be (nil raw is a referrer
// of another shape).
func openBundle(raw []byte) (openedBundle, string) {
	var ob openedBundle
	if raw == nil {
		return ob, "not a single-layer sigstore bundle"
	}
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		return ob, fmt.Sprintf("unreadable bundle: %v", err)
	}
	b, err := sgbundle.NewBundle(&pb)
	if err != nil {
		return ob, fmt.Sprintf("invalid bundle: %v", err)
	}
	env := pb.GetDsseEnvelope()
	if env == nil {
		return ob, "bundle holds no DSSE envelope"
	}
	ob.bundle = b
	var st intotov1.Statement
	if err := protojson.Unmarshal(env.GetPayload(), &st); err != nil {
		return ob, ""
	}
	ob.statement = &st
	ob.subjects = statementSubjects(&st)
	return ob, ""
}

// predicateType is the statement's predicate type, "" when the payload is not a statement.
func (ob openedBundle) predicateType() string { return ob.statement.GetPredicateType() }

// isSignature reports whether the bundle counts as a cosign signature. An unreadable
// payload counts: an altered payload is as likely as a foreign one, and the signature
// check then says which.
func (ob openedBundle) isSignature() bool {
	return ob.statement == nil || ob.predicateType() == ctypes.CosignSignPredicateType
}
