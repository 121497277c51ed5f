package testenv

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PlatformImage returns a small random image whose config names platform ("os/arch[/variant]")
// and the given created time. Tests build images in-process: nothing can be pulled.
func PlatformImage(t testing.TB, platform string, created time.Time) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	setPlatform(cf, platform)
	cf.Created = v1.Time{Time: created.UTC()}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// BuildKitIndex wraps img the way BuildKit pushes a single-platform build with provenance:
// an index holding the image and an unknown/unknown attestation manifest that refers to it.
func BuildKitIndex(t testing.TB, img v1.Image) v1.ImageIndex {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	att, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	// BuildKit's attestation config says unknown/unknown too.
	acf, err := att.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	acf = acf.DeepCopy()
	acf.OS, acf.Architecture = "unknown", "unknown"
	if att, err = mutate.ConfigFile(att, acf); err != nil {
		t.Fatal(err)
	}
	att = mutate.MediaType(att, types.OCIManifestSchema1)
	att = mutate.ConfigMediaType(att, types.OCIConfigJSON)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{
				"vnd.docker.reference.type":   "attestation-manifest",
				"vnd.docker.reference.digest": d.String(),
			},
		}},
	)
}

// Push writes an image or index to ref, a tag or digest reference on a test registry.
func Push(t testing.TB, ref string, v remote.Taggable) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	// The docker config's credentials, for registries that want a login.
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	switch x := v.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, x, auth)
	case v1.Image:
		err = remote.Write(r, x, auth)
	default:
		err = remote.Tag(r.Context().Tag(r.Identifier()), v, auth)
	}
	if err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// Resolve is the digest ref (a tag or digest reference on a test registry) points at, or
// "" when the registry does not hold it.
func Resolve(t testing.TB, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	var terr *transport.Error
	switch {
	case err == nil:
		return desc.Digest.String()
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		return ""
	}
	t.Fatalf("resolving %s: %v", ref, err)
	return ""
}

// Referrers lists the referrers of ref (repo@digest on a test registry), through the
// referrers API or its fallback tag.
func Referrers(t testing.TB, ref string) []v1.Descriptor {
	t.Helper()
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatalf("referrers of %s: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	return im.Manifests
}

// Digest is v's digest as a string.
func Digest(t testing.TB, v interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := v.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// AppendThenMutate returns the two images a `crane append` + `crane mutate --set-platform`
// job pushes under one tag: layers on an empty image, whose config names no platform, then
// the same layers with platform and created set.
func AppendThenMutate(t testing.TB, platform string, created time.Time) (bare, final v1.Image) {
	t.Helper()
	l, err := random.Layer(512, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	if bare, err = mutate.AppendLayers(empty.Image, l); err != nil {
		t.Fatal(err)
	}
	cf, err := bare.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	setPlatform(cf, platform)
	cf.Created = v1.Time{Time: created.UTC()}
	if final, err = mutate.ConfigFile(bare, cf); err != nil {
		t.Fatal(err)
	}
	return bare, final
}

// IndexChildren reads the index at ref on a test registry: "os/arch[/variant]" → child
// digest (manifests without a platform, such as attestations, are left out).
func IndexChildren(t testing.TB, ref string) map[string]string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatalf("reading index %s: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range im.Manifests {
		if m.Platform != nil {
			p := m.Platform.OS + "/" + m.Platform.Architecture
			if m.Platform.Variant != "" {
				p += "/" + m.Platform.Variant
			}
			out[p] = m.Digest.String()
		}
	}
	return out
}

// BusyboxPath is Debian's busybox-static binary (hack/buildkit.sh installs it).
const BusyboxPath = "/bin/busybox"

// BusyboxImage returns a base image for Dockerfile RUN steps: one layer holding a static
// busybox at /bin/busybox with /bin/sh and a few applets linked to it, and a config naming
// platform ("os/arch") and a PATH. Only the machine's own platform can RUN anything.
func BusyboxImage(t testing.TB, platform string) v1.Image {
	t.Helper()
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		Require(t, "static busybox: %v (run `bash hack/buildkit.sh` to install busybox-static)", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755},
		{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777},
		{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))},
	}
	for _, applet := range []string{"sh", "echo", "cat", "ls", "true", "false", "test", "env", "sleep", "nc", "nslookup", "hostname", "id"} {
		hdrs = append(hdrs, &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777})
	}
	for _, h := range hdrs {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Name == "bin/busybox" {
			if _, err := tw.Write(bin); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "busybox-static"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	setPlatform(cf, platform)
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// setPlatform writes platform ("os/arch[/variant]") into an image config.
func setPlatform(cf *v1.ConfigFile, platform string) {
	parts := strings.Split(platform, "/")
	cf.OS, cf.Architecture, cf.Variant = parts[0], parts[1], ""
	if len(parts) > 2 {
		cf.Variant = parts[2]
	}
}

// FileImage is a linux/amd64 image of one layer holding files (path in the image → file
// on this machine, mode 0755) with entrypoint: a static binary's image.
func FileImage(t testing.TB, files map[string]string, entrypoint []string) v1.Image {
	t.Helper()
	img, err := fileImage(files, entrypoint)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func fileImage(files map[string]string, entrypoint []string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(files[p])
		if err != nil {
			return nil, err
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(b)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	setPlatform(cf, "linux/amd64")
	cf.Config.Entrypoint = entrypoint
	return mutate.ConfigFile(img, cf)
}
