package selfimage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// emptyConfig is the OCI empty descriptor's content: the config of an artifact manifest.
var emptyConfig = []byte("{}")

const (
	emptyConfigType = types.MediaType("application/vnd.oci.empty.v1+json")
	// sbomTitle is the file name of the SBOM layer (org.opencontainers.image.title).
	sbomTitle = "promoter.spdx.json"
)

// referrer is an OCI 1.1 artifact manifest holding one blob, attached to subject: an
// image manifest with artifactType, the empty config and a subject. Written with
// go-containerregistry's remote.Write, which also lists it in the registry's referrers
// (or in the sha256-<hex> fallback tag of a registry without the referrers API).
type referrer struct {
	artifactType types.MediaType
	blob         []byte
	subject      v1.Descriptor
	annotations  map[string]string
	layerAnns    map[string]string
}

var _ partial.CompressedImageCore = (*referrer)(nil)

// newSBOMReferrer wraps an SPDX document as a referrer of subject.
func newSBOMReferrer(sbom []byte, subject v1.Descriptor, created time.Time) (v1.Image, error) {
	return partial.CompressedToImage(&referrer{
		artifactType: SBOMMediaType,
		blob:         sbom,
		subject:      v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		annotations:  map[string]string{"org.opencontainers.image.created": created.UTC().Format(time.RFC3339)},
		layerAnns:    map[string]string{"org.opencontainers.image.title": sbomTitle},
	})
}

func (r *referrer) descriptor(mt types.MediaType, b []byte) v1.Descriptor {
	h, n, _ := v1.SHA256(bytes.NewReader(b)) // reading memory does not fail
	return v1.Descriptor{MediaType: mt, Digest: h, Size: n}
}

func (r *referrer) RawConfigFile() ([]byte, error)      { return emptyConfig, nil }
func (r *referrer) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (r *referrer) RawManifest() ([]byte, error) {
	layer := r.descriptor(r.artifactType, r.blob)
	layer.Annotations = r.layerAnns
	subject := r.subject
	return json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  string(r.artifactType),
		Config:        r.descriptor(emptyConfigType, emptyConfig),
		Layers:        []v1.Descriptor{layer},
		Subject:       &subject,
		Annotations:   r.annotations,
	})
}

func (r *referrer) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range []blob{{r.blob, r.descriptor(r.artifactType, r.blob)}, {emptyConfig, r.descriptor(emptyConfigType, emptyConfig)}} {
		if d.d.Digest == h {
			return d, nil
		}
	}
	return nil, fmt.Errorf("referrer has no blob %s", h)
}

// blob is a byte slice as a layer of a referrer.
type blob struct {
	b []byte
	d v1.Descriptor
}

func (b blob) Digest() (v1.Hash, error)            { return b.d.Digest, nil }
func (b blob) Compressed() (io.ReadCloser, error)  { return io.NopCloser(bytes.NewReader(b.b)), nil }
func (b blob) Size() (int64, error)                { return b.d.Size, nil }
func (b blob) MediaType() (types.MediaType, error) { return b.d.MediaType, nil }
