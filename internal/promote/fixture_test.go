package promote_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/promoter-dev/promoter/internal/registry"
)

const bundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// fixture is a signed 2-platform index in a source repository.
type fixture struct {
	ref      string  // "host/repo:tag"
	index    v1.Hash // index digest
	children []v1.Hash
	// referrers maps each subject (index, children) to the referrer written for it, and the
	// bundle referrer to the referrer attached to it (a referrer's referrer).
	referrers map[v1.Hash]v1.Hash
}

type fixtureOpts struct {
	layers    int
	layerSize int64
	// plain pushes the index without signatures or referrers (benchmarks compare with
	// tools that would not copy them).
	plain bool
}

// pushFixture builds a random 2-platform index, pushes it as host/repo:tag, and attaches by
// hand what cosign and other tools attach: a cosign sha256-<hex>.sig for the index and each
// child, a sigstore bundle OCI referrer for each, and an SBOM referrer on the index's bundle.
func pushFixture(t testing.TB, host, repo, tag string, o fixtureOpts) *fixture {
	t.Helper()
	if o.layers == 0 {
		o.layers, o.layerSize = 2, 1024
	}
	ctx := context.Background()
	opts := registry.Client{}.Remote(ctx)
	r, err := name.NewRepository(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	f := &fixture{ref: r.Tag(tag).String(), referrers: map[v1.Hash]v1.Hash{}}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(o.layerSize, int64(o.layers))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r.Digest(d.String()), img, opts...); err != nil {
			t.Fatalf("pushing %s child: %v", arch, err)
		}
		f.children = append(f.children, d)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	if err := remote.WriteIndex(r.Tag(tag), idx, opts...); err != nil {
		t.Fatalf("pushing index: %v", err)
	}
	if f.index, err = idx.Digest(); err != nil {
		t.Fatal(err)
	}
	if o.plain {
		return f
	}
	for _, d := range append([]v1.Hash{f.index}, f.children...) {
		pushCosignSig(t, r, d, "sig-of-"+d.Hex[:12])
		ref := pushReferrer(t, r, d, bundleType, `{"mediaType":"`+bundleType+`","subject":"`+d.String()+`"}`)
		f.referrers[d] = ref
	}
	// A referrer of a referrer: an SBOM attached to the index's bundle.
	b := f.referrers[f.index]
	f.referrers[b] = pushReferrer(t, r, b, "application/spdx+json", `{"spdxVersion":"SPDX-2.3"}`)
	return f
}

// pushCosignSig writes a cosign-style signature manifest at sha256-<hex>.sig: one
// simplesigning layer whose annotation carries the (fake) signature.
func pushCosignSig(t testing.TB, r name.Repository, d v1.Hash, sig string) v1.Hash {
	t.Helper()
	payload := fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, r.String(), d.String())
	l := static.NewLayer([]byte(payload), "application/vnd.dev.cosign.simplesigning.v1+json")
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: l, Annotations: map[string]string{"dev.cosignproject.cosign/signature": sig}})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	tag := r.Tag(strings.Replace(d.String(), ":", "-", 1) + ".sig")
	if err := remote.Write(tag, img, registry.Client{}.Remote(context.Background())...); err != nil {
		t.Fatalf("pushing %s: %v", tag, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pushReferrer writes an OCI 1.1 artifact manifest (empty config, one layer) whose subject
// is d; go-containerregistry adds it to the sha256-<hex> fallback tag.
func pushReferrer(t testing.TB, r name.Repository, d v1.Hash, artifactType, content string) v1.Hash {
	t.Helper()
	ctx := context.Background()
	opts := registry.Client{}.Remote(ctx)
	subject, err := remote.Head(r.Digest(d.String()), opts...)
	if err != nil {
		t.Fatalf("subject %s: %v", d, err)
	}
	layer := static.NewLayer([]byte(content), types.MediaType(artifactType))
	emptyCfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	for _, l := range []v1.Layer{layer, emptyCfg} {
		if err := remote.WriteLayer(r, l, opts...); err != nil {
			t.Fatal(err)
		}
	}
	ld, _ := layer.Digest()
	cd, _ := emptyCfg.Digest()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2, Data: []byte("{}")},
		Layers:        []v1.Descriptor{{MediaType: types.MediaType(artifactType), Digest: ld, Size: int64(len(content))}},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations:   map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r.Digest(h.String()), rawManifest{raw: raw, mt: types.OCIManifestSchema1}, opts...); err != nil {
		t.Fatalf("pushing referrer of %s: %v", d, err)
	}
	return h
}

// digestOf returns the digest ref points at.
func digestOf(t testing.TB, ref string) string {
	t.Helper()
	r, err := registry.Client{}.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r, registry.Client{}.Remote(context.Background())...)
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return d.Digest.String()
}

// checkAttached fails unless repo holds the cosign signature and the referrers of every
// subject of f, including the referrer of a referrer.
func checkAttached(t *testing.T, repo string, f *fixture) {
	t.Helper()
	ctx := context.Background()
	c := registry.Client{}
	r, err := c.ParseRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Hash{f.index}, f.children...) {
		sig := r.Tag(strings.Replace(d.String(), ":", "-", 1) + ".sig")
		if _, err := remote.Head(sig, c.Remote(ctx)...); err != nil {
			t.Errorf("signature %s missing: %v", sig, err)
		}
	}
	for subject, want := range f.referrers {
		idx, err := remote.Referrers(r.Digest(subject.String()), c.Remote(ctx)...)
		if err != nil {
			t.Fatalf("referrers of %s in %s: %v", subject, repo, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range im.Manifests {
			if m.Digest == want {
				n++
			}
		}
		if n != 1 {
			t.Errorf("referrers of %s in %s list %s %d times, want once (%d entries)", subject.Hex[:12], repo, want.Hex[:12], n, len(im.Manifests))
		}
		if _, err := remote.Head(r.Digest(want.String()), c.Remote(ctx)...); err != nil {
			t.Errorf("referrer %s of %s missing: %v", want, subject, err)
		}
	}
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := registry.Client{}.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// emptyKeychain gives no credentials, whatever the docker config of the machine says.
type emptyKeychain struct{}

func (emptyKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// rawManifest lets remote.Put write hand-made manifest bytes.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }
