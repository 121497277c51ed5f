package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	cremote "github.com/sigstore/cosign/v3/pkg/cosign/remote"
	"github.com/sigstore/cosign/v3/pkg/oci"
	"github.com/sigstore/cosign/v3/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/cosign/v3/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/promoter-dev/promoter/internal/registry"
)

// writeLegacy signs d the way cosign did before sigstore bundles (and still does with
// --new-bundle-format=false): a simple-signing payload naming d, signed with the key, as
// a layer of the image tagged sha256-<hex>.sig with the base64 signature in the layer's
// dev.cosignproject.cosign/signature annotation. Signatures already under the tag are
// kept; cosign's dupe detector drops ours if one by the same key already verifies.
func writeLegacy(ctx context.Context, reg registry.Client, sv signature.SignerVerifier, d name.Digest) error {
	body, err := (&payload.Cosign{Image: d}).MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding the payload for %s: %w", d, err)
	}
	raw, err := sv.SignMessage(bytes.NewReader(body), sigopts.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	sig, err := static.NewSignature(body, base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	opts, err := writeOptions(ctx, reg, d)
	if err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", d.DigestStr(), d.Context(), err)
	}
	se, err := ociremote.SignedEntity(d, opts...)
	if err != nil {
		return fmt.Errorf("reading %s: %w", d, err)
	}
	se, err = mutate.AttachSignatureToEntity(se, sig, mutate.WithDupeDetector(cremote.NewDupeDetector(sv)))
	if err != nil {
		return fmt.Errorf("attaching the signature of %s: %w", d, err)
	}
	if err := ociremote.WriteSignatures(d.Repository, se, opts...); err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", d.DigestStr(), d.Context(), err)
	}
	return nil
}

// checkLegacy looks at the signatures under t's sha256-<hex>.sig tag.
func checkLegacy(ctx context.Context, reg registry.Client, v signature.Verifier, t target) (check, error) {
	var c check
	tag, list, err := readLegacy(ctx, reg, t)
	if err != nil {
		return c, err
	}
	for i, sig := range list {
		c.stored++
		body, raw, reason, err := legacyPayload(sig)
		if err != nil {
			return c, fmt.Errorf("reading signature payload %s layer %d: %w", tag, i, err)
		}
		var named string
		if reason == "" {
			named, reason = verifyLegacy(ctx, v, body, raw)
		}
		switch {
		case reason != "":
			c.reason = fmt.Sprintf("%s layer %d: %s", tag, i, reason)
		case named != t.digest.DigestStr():
			c.other = named
		default:
			c.ok = true
			return c, nil
		}
	}
	return c, nil
}

// readLegacy reads the signatures under t's sha256-<hex>.sig tag: none when the tag does
// not exist.
func readLegacy(ctx context.Context, reg registry.Client, t target) (name.Tag, []oci.Signature, error) {
	opts := ociOptions(t.digest, reg.Remote(ctx))
	tag, err := ociremote.SignatureTag(t.digest, opts...)
	if err != nil {
		return tag, nil, fmt.Errorf("naming the signature tag of %s: %w", t.digest, err)
	}
	sigs, err := ociremote.Signatures(tag, opts...)
	if err != nil {
		return tag, nil, fmt.Errorf("reading signatures %s: %w", tag, err)
	}
	list, err := sigs.Get()
	if err != nil {
		return tag, nil, fmt.Errorf("reading signatures %s: %w", tag, err)
	}
	return tag, list, nil
}

// legacyPayload reads one legacy signature layer: the signed payload and the raw
// signature from its annotation. reason says why the layer holds no signature; err is a
// registry error reading the payload.
func legacyPayload(sig oci.Signature) (body, raw []byte, reason string, err error) {
	b64, err := sig.Base64Signature()
	if err != nil || b64 == "" {
		return nil, nil, fmt.Sprintf("no %s annotation", static.SignatureAnnotationKey), nil
	}
	raw, err = base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, nil, fmt.Sprintf("signature is not base64: %v", err), nil
	}
	body, err = sig.Payload()
	if err != nil {
		return nil, nil, "", err
	}
	return body, raw, "", nil
}

// verifyLegacy checks a legacy signature raw of the simple-signing payload body with v
// and returns the digest the payload names; reason says why it does not verify.
func verifyLegacy(ctx context.Context, v signature.Verifier, body, raw []byte) (named, reason string) {
	if err := v.VerifySignature(bytes.NewReader(raw), bytes.NewReader(body), sigopts.WithContext(ctx)); err != nil {
		return "", err.Error()
	}
	var ss payload.SimpleContainerImage
	if err := json.Unmarshal(body, &ss); err != nil {
		return "", fmt.Sprintf("payload is not a simple-signing document: %v", err)
	}
	if ss.Critical.Type != payload.CosignSignatureType {
		return "", fmt.Sprintf("payload type %q, want %q", ss.Critical.Type, payload.CosignSignatureType)
	}
	return ss.Critical.Image.DockerManifestDigest, ""
}

// ociOptions are cosign's registry options for d: ours (transport, credentials), and
// plain HTTP kept for hosts d already speaks HTTP to (cosign re-parses references and
// would otherwise lose it).
func ociOptions(d name.Digest, opts []remote.Option) []ociremote.Option {
	out := []ociremote.Option{ociremote.WithRemoteOptions(opts...)}
	if d.Context().Registry.Scheme() == "http" {
		out = append(out, ociremote.WithNameOptions(name.Insecure))
	}
	return out
}

// writeOptions are cosign's registry options for writing d's signatures, into d's
// repository.
func writeOptions(ctx context.Context, reg registry.Client, d name.Digest) ([]ociremote.Option, error) {
	opts, err := reg.Writing(ctx, d.Context())
	if err != nil {
		return nil, err
	}
	return ociOptions(d, opts), nil
}
