package sign

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	intotov1 "github.com/in-toto/attestation/go/v1"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
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
func writeBundle(ctx context.Context, reg registry.Client, kp *keypair, d name.Digest) error {
	alg, hex, ok := strings.Cut(d.DigestStr(), ":")
	if !ok {
		return fmt.Errorf("digest %s: want algorithm:hex", d.DigestStr())
	}
	statement := &intotov1.Statement{
		Type:          intotov1.StatementTypeUri,
		Subject:       []*intotov1.ResourceDescriptor{{Digest: map[string]string{alg: hex}}},
		PredicateType: ctypes.CosignSignPredicateType,
		Predicate:     &structpb.Struct{},
	}
	payload, err := protojson.Marshal(statement)
	if err != nil {
		return fmt.Errorf("encoding the statement for %s: %w", d, err)
	}
	// No TrustedRoot, certificate provider, transparency log or timestamp authority: the
	// options cosign's bundle.SignData ends up with for a key and --tlog-upload=false.
	b, err := sgsign.Bundle(&sgsign.DSSEData{Data: payload, PayloadType: "application/vnd.in-toto+json"}, kp,
		sgsign.BundleOptions{Context: ctx})
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	raw, err := protojson.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding the bundle for %s: %w", d, err)
	}
	opts, err := writeOptions(ctx, reg, d)
	if err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", d.DigestStr(), d.Context(), err)
	}
	if err := ociremote.WriteAttestationNewBundleFormat(d, raw, ctypes.CosignSignPredicateType, opts...); err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", d.DigestStr(), d.Context(), err)
	}
	return nil
}

// checkBundles looks at the sigstore bundle referrers of t. Bundles that are not
// signatures (attestations with other predicate types) are not counted.
func checkBundles(ctx context.Context, reg registry.Client, v signature.Verifier, t target) (check, error) {
	var c check
	idx, err := reg.Referrers(t.digest, reg.Remote(ctx)...)
	if err != nil {
		return c, fmt.Errorf("listing referrers of %s: %w", t.digest, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return c, fmt.Errorf("listing referrers of %s: %w", t.digest, err)
	}
	for _, m := range im.Manifests {
		if !strings.HasPrefix(m.ArtifactType, bundleMediaTypePrefix) {
			continue
		}
		if pt, ok := m.Annotations[ociremote.BundlePredicateType]; ok && pt != ctypes.CosignSignPredicateType {
			continue
		}
		ref := t.digest.Context().Digest(m.Digest.String())
		raw, err := readBundleLayer(ctx, reg, ref)
		if err != nil {
			return c, err
		}
		subjects, isSig, reason := verifyBundle(ctx, v, raw)
		if !isSig {
			continue
		}
		c.stored++
		switch {
		case reason != "":
			c.reason = fmt.Sprintf("bundle %s: %s", m.Digest, reason)
		case slices.Contains(subjects, t.digest.DigestStr()):
			c.ok = true
			return c, nil
		default:
			c.other = strings.Join(subjects, ", ")
		}
	}
	return c, nil
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
	if raw == nil {
		return nil, true, "not a single-layer sigstore bundle"
	}
	var pb protobundle.Bundle
	if err := protojson.Unmarshal(raw, &pb); err != nil {
		return nil, true, fmt.Sprintf("unreadable bundle: %v", err)
	}
	b, err := sgbundle.NewBundle(&pb)
	if err != nil {
		return nil, true, fmt.Sprintf("invalid bundle: %v", err)
	}
	env := pb.GetDsseEnvelope()
	if env == nil {
		return nil, true, "bundle holds no DSSE envelope"
	}
	var st intotov1.Statement
	if err := protojson.Unmarshal(env.GetPayload(), &st); err != nil {
		// An altered payload is as likely as a foreign one: the signature decides.
		st.PredicateType = ctypes.CosignSignPredicateType
	}
	if st.GetPredicateType() != ctypes.CosignSignPredicateType {
		return nil, false, ""
	}
	co := &cosign.CheckOpts{SigVerifier: v, IgnoreTlog: true, IgnoreSCT: true, Offline: true}
	// The statement's subject is compared by the caller, so the error says which digest
	// it names instead of sigstore-go's generic mismatch.
	if _, err := cosign.VerifyNewBundle(ctx, co, verify.WithoutArtifactUnsafe(), b); err != nil {
		return nil, true, err.Error()
	}
	for _, s := range st.GetSubject() {
		for alg, hex := range s.GetDigest() {
			subjects = append(subjects, alg+":"+hex)
		}
	}
	if len(subjects) == 0 {
		return nil, true, "statement names no subject digest"
	}
	return subjects, true, ""
}
