package bench

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tinyImage is a random image of one 1 KiB layer whose config names linux/arch.
func tinyImage(arch string) (v1.Image, error) {
	img, err := random.Image(1024, 1)
	if err != nil {
		return nil, err
	}
	return withPlatform(img, arch)
}

func withPlatform(img v1.Image, arch string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	return mutate.ConfigFile(img, cf)
}

// randomLayer is a gzip layer holding one file of size pseudo-random bytes from seed. The
// gzip stream is stored (level NoCompression): valid for every tool, and regenerated at
// memory speed on each read, so a 1 GiB image needs no 1 GiB of memory or compression time.
func randomLayer(seed uint64, size int64) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			gz, _ := gzip.NewWriterLevel(pw, gzip.NoCompression)
			tw := tar.NewWriter(gz)
			err := tw.WriteHeader(&tar.Header{Name: "data", Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
			if err == nil {
				var key [32]byte
				binary.LittleEndian.PutUint64(key[:], seed)
				_, err = io.CopyN(tw, rand.NewChaCha8(key), size)
			}
			if err == nil {
				err = tw.Close()
			}
			if err == nil {
				err = gz.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr, nil
	}, tarball.WithMediaType(types.OCILayer))
}

// bigImage is an OCI image for linux/arch of layers random layers of layerSize bytes each;
// seed makes its layers distinct from another image's.
func bigImage(arch string, seed uint64, layers int, layerSize int64) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i := range layers {
		l, err := randomLayer(seed*1000+uint64(i), layerSize)
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	return withPlatform(img, arch)
}

// bigIndex is an OCI index of one bigImage per arch.
func bigIndex(archs []string, seed uint64, layers int, layerSize int64) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, arch := range archs {
		img, err := bigImage(arch, seed+uint64(i), layers, layerSize)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, nil
}

// client pushes and reads with one reused transport.
type client struct {
	tr http.RoundTripper
}

func newClient() *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &client{tr: tr}
}

func (c *client) opts(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(c.tr), remote.WithJobs(4)}
}

func (c *client) push(ctx context.Context, ref string, t remote.Taggable) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	switch v := t.(type) {
	case v1.ImageIndex:
		err = c.pushIndex(ctx, r, v)
	case v1.Image:
		err = remote.Write(r, v, c.opts(ctx)...)
	default:
		err = fmt.Errorf("cannot push %T", t)
	}
	if err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// pushIndex pushes the children of idx by digest, then idx without the artifactType that
// go-containerregistry copies from each child's config into its descriptor: no builder
// writes one, and skopeo 1.9 refuses to copy an index holding it without rewriting it.
func (c *client) pushIndex(ctx context.Context, r name.Reference, idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	im = im.DeepCopy()
	for i, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		if err := remote.Write(r.Context().Digest(d.Digest.String()), img, c.opts(ctx)...); err != nil {
			return err
		}
		im.Manifests[i].ArtifactType = ""
	}
	raw, err := json.Marshal(im)
	if err != nil {
		return err
	}
	return remote.Put(r, rawManifest{raw: raw, mt: im.MediaType}, c.opts(ctx)...)
}

// rawManifest is a manifest written as the given bytes.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// digest is what ref points at now.
func (c *client) digest(ctx context.Context, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	d, err := remote.Head(r, c.opts(ctx)...)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", ref, err)
	}
	return d.Digest.String(), nil
}
