package builders_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// sourceTree writes a small source tree, with a .git directory that must not end up in
// the image.
func sourceTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"Dockerfile":       "FROM scratch\nCOPY . /src\n",
		"main.go":          "package main\n\nfunc main() {}\n",
		"cmd/tool/tool.go": "package tool\n",
		".git/HEAD":        "ref: refs/heads/main\n",
	}
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("main.go", filepath.Join(dir, "link.go")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLocalExecutorPushesPlatformImage(t *testing.T) {
	ctx := context.Background()
	reg := testenv.StartRegistry(t)
	dir := sourceTree(t)

	// A multi-platform base: each build must take its own platform's child.
	base := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		pl := types.MustPlatform(p)
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = pl.OS, pl.Architecture, pl.Variant
		img, _ = mutate.ConfigFile(img, cf)
		base = mutate.AppendManifests(base, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: pl.OS, Architecture: pl.Architecture, Variant: pl.Variant},
		}})
	}
	baseRef, _ := name.ParseReference(reg.Host + "/library/base:1")
	if err := remote.WriteIndex(baseRef, base); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, platform, base string
		wantLayers           int
	}{
		{name: "scratch amd64", platform: "linux/amd64", wantLayers: 1},
		{name: "scratch arm v7", platform: "linux/arm/v7", wantLayers: 1},
		{name: "base arm v7", platform: "linux/arm/v7", base: baseRef.String(), wantLayers: 2},
		{name: "base arm64", platform: "linux/arm64", base: baseRef.String(), wantLayers: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := types.Pipeline{Name: "web", Build: types.BuildSpec{Executor: types.ExecutorLocal, Dir: dir, Base: tc.base}}
			l, err := builders.NewLocal(registry.Client{}, []types.Pipeline{p})
			if err != nil {
				t.Fatal(err)
			}
			req := types.BuildRequest{
				Pipeline: "web", Revision: "3f2c1a9", Platform: types.MustPlatform(tc.platform),
				SourceRepo: "https://git.example/acme/web.git",
				Image:      reg.Host + "/acme/web:" + tc.name[:4] + "-" + types.MustPlatform(tc.platform).Token(),
			}
			built, err := l.Build(ctx, req, 1)
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := name.ParseReference(req.Image)
			img, err := remote.Image(ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("pushed image is invalid: %v", err)
			}
			d, _ := img.Digest()
			if built.Job != "local@"+d.String() || built.Digest != d.String() {
				t.Errorf("built: got %+v, want job local@%s and digest %s", built, d, d)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			got := types.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
			if got != req.Platform {
				t.Errorf("config platform: got %s, want %s", got, req.Platform)
			}
			if rev := cf.Config.Labels["org.opencontainers.image.revision"]; rev != "3f2c1a9" {
				t.Errorf("revision label: got %q, want 3f2c1a9", rev)
			}
			if !cf.Created.Time.Equal(builders.Epoch) {
				t.Errorf("created: got %s, want %s", cf.Created.Time, builders.Epoch)
			}
			layers, _ := img.Layers()
			if len(layers) != tc.wantLayers {
				t.Fatalf("layers: got %d, want %d", len(layers), tc.wantLayers)
			}
			if diff := cmp.Diff([]string{
				"src/", "src/Dockerfile", "src/cmd/", "src/cmd/tool/", "src/cmd/tool/tool.go", "src/link.go", "src/main.go",
			}, layerFiles(t, layers[len(layers)-1])); diff != "" {
				t.Errorf("source layer entries (-want +got):\n%s", diff)
			}

			// The same inputs give the same digest: a retry pushes the identical image.
			if _, err := l.Build(ctx, req, 2); err != nil {
				t.Fatal(err)
			}
			again, err := remote.Head(ref)
			if err != nil {
				t.Fatal(err)
			}
			if again.Digest != d {
				t.Errorf("second build: digest %s, want %s", again.Digest, d)
			}
		})
	}
}

func TestLocalExecutorErrors(t *testing.T) {
	ctx := context.Background()
	reg := testenv.StartRegistry(t)
	// A single-platform base image, linux/amd64 only.
	img, _ := random.Image(64, 1)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, _ = mutate.ConfigFile(img, cf)
	baseRef, _ := name.ParseReference(reg.Host + "/library/amd64-only:1")
	if err := remote.Write(baseRef, img); err != nil {
		t.Fatal(err)
	}
	l, err := builders.NewLocal(registry.Client{}, []types.Pipeline{
		{Name: "web", Build: types.BuildSpec{Executor: types.ExecutorLocal, Dir: sourceTree(t), Base: baseRef.String()}},
		{Name: "api", Build: types.BuildSpec{Executor: types.ExecutorKubernetes}},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := types.BuildRequest{Pipeline: "web", Revision: "abc", Platform: types.MustPlatform("linux/arm64"), Image: reg.Host + "/acme/web:abc-arm64"}
	if _, err := l.Build(ctx, req, 1); !errors.Is(err, bus.ErrPermanent) {
		t.Errorf("base of another platform: got %v, want ErrPermanent", err)
	}
	req.Pipeline = "api"
	if _, err := l.Build(ctx, req, 1); !errors.Is(err, builders.ErrUnknownPipeline) {
		t.Errorf("kubernetes pipeline: got %v, want ErrUnknownPipeline", err)
	}
	if _, err := builders.NewLocal(registry.Client{}, []types.Pipeline{{Name: "x", Build: types.BuildSpec{Executor: types.ExecutorLocal}}}); err == nil {
		t.Error("local pipeline without build.dir: got no error")
	}
}

// layerFiles lists a layer's entry names in archive order.
func layerFiles(t *testing.T, l v1.Layer) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(builders.Epoch) {
			t.Errorf("%s: owner %d:%d, mtime %s; want 0:0 at %s", h.Name, h.Uid, h.Gid, h.ModTime, builders.Epoch)
		}
		names = append(names, h.Name)
	}
}
