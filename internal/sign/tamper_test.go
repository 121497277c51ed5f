package sign_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	ctypes "github.com/sigstore/cosign/v3/pkg/types"

	"github.com/promoter-dev/promoter/internal/sign"
)

// These helpers (no tests here) read and tamper with stored signatures directly through
// go-containerregistry, the way an attacker or a broken copy tool would.

func sigTag(t *testing.T, repo, digest string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(repo + ":" + strings.Replace(digest, ":", "-", 1) + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func fallbackTag(t *testing.T, repo, digest string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(repo + ":" + strings.Replace(digest, ":", "-", 1))
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func digestRef(t *testing.T, repo, digest string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// bundleReferrers lists the sigstore bundle referrers of digest.
func bundleReferrers(t *testing.T, repo, digest string) []v1.Descriptor {
	t.Helper()
	idx, err := remote.Referrers(digestRef(t, repo, digest))
	if err != nil {
		t.Fatalf("listing referrers of %s: %v", digest, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Descriptor
	for _, m := range im.Manifests {
		if strings.HasPrefix(m.ArtifactType, "application/vnd.dev.sigstore.bundle") {
			out = append(out, m)
		}
	}
	return out
}

// countSignatures counts the stored signatures of format f for digest.
func countSignatures(t *testing.T, repo, digest string, f sign.Format) int {
	t.Helper()
	if f == sign.FormatBundle {
		return len(bundleReferrers(t, repo, digest))
	}
	img, err := remote.Image(sigTag(t, repo, digest))
	if err != nil {
		if strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
			return 0
		}
		t.Fatalf("reading %s: %v", sigTag(t, repo, digest), err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return len(layers)
}

// copySignature makes the signature of digest from appear as the signature of digest to,
// unchanged: the .sig manifest re-tagged, or the referrers fallback index re-tagged.
func copySignature(t *testing.T, repo, from, to string, f sign.Format) {
	t.Helper()
	src, dst := sigTag(t, repo, from), sigTag(t, repo, to)
	if f == sign.FormatBundle {
		src, dst = fallbackTag(t, repo, from), fallbackTag(t, repo, to)
	}
	desc, err := remote.Get(src)
	if err != nil {
		t.Fatalf("reading %s: %v", src, err)
	}
	if err := remote.Put(dst, desc); err != nil {
		t.Fatalf("writing %s: %v", dst, err)
	}
}

// corruptSignature replaces the stored signature of digest with an altered copy: the
// legacy payload layer gets a byte appended (the annotation's signature no longer
// matches it); the bundle's DSSE signature gets its bytes flipped.
func corruptSignature(t *testing.T, repo, digest string, f sign.Format) {
	t.Helper()
	if f == sign.FormatLegacy {
		tag := sigTag(t, repo, digest)
		img, err := remote.Image(tag)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		payload := readLayer(t, layers[0])
		bad := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		bad, err = mutate.Append(bad, mutate.Addendum{
			Layer:       static.NewLayer(append(payload, ' '), m.Layers[0].MediaType),
			Annotations: m.Layers[0].Annotations,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, bad); err != nil {
			t.Fatal(err)
		}
		return
	}
	refs := bundleReferrers(t, repo, digest)
	if len(refs) != 1 {
		t.Fatalf("%s has %d bundles, want 1 to corrupt", digest, len(refs))
	}
	img, err := remote.Image(digestRef(t, repo, refs[0].Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(readLayer(t, layers[0]), &b); err != nil {
		t.Fatal(err)
	}
	sigs := b["dsseEnvelope"].(map[string]any)["signatures"].([]any)
	s := sigs[0].(map[string]any)
	raw, err := base64.StdEncoding.DecodeString(s["sig"].(string))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xff
	s["sig"] = base64.StdEncoding.EncodeToString(raw)
	corrupted, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	d := digestRef(t, repo, digest)
	if err := ociremote.WriteAttestationNewBundleFormat(d, corrupted, ctypes.CosignSignPredicateType); err != nil {
		t.Fatal(err)
	}
	// Drop the good bundle from the fallback index so only the corrupted one is left.
	tag := fallbackTag(t, repo, digest)
	idx, err := remote.Index(tag)
	if err != nil {
		t.Fatal(err)
	}
	good := refs[0].Digest
	idx = mutate.RemoveManifests(idx, func(desc v1.Descriptor) bool { return desc.Digest == good })
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	if n := len(bundleReferrers(t, repo, digest)); n != 1 {
		t.Fatalf("after corrupting: %d bundles, want 1", n)
	}
}

func readLayer(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
