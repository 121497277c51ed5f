package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/selfimage"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// TestPromoterReleasesItself is issue 25's dogfood: promoter's own image, built for
// linux/amd64 and linux/arm64 by the code hack/image.sh runs (internal/selfimage), is
// pushed to a staging registry the way the release workflow does (by digest with its SBOM,
// signed with the CI key by the cosign CLI, then tagged <sha>-<arch>), and a running
// promoter with a merge-only pipeline merges, signs and promotes it to a release
// registry. There the cosign CLI verifies the index and both children, each child still
// has its SBOM referrer (through the fallback tag: the registry has no referrers API), and
// the promoted binary of this machine's platform runs and names the commit it was built from.
func TestPromoterReleasesItself(t *testing.T) {
	cosign := testenv.Tool(t, "cosign")
	env := newStaged(t, "promoter-dev/promoter")
	staging, release := env.Staging, env.Dest
	ciKey, ciPub := writeKeyPair(t, t.TempDir(), "ci-pw")

	d := env.startTrusting(t, "promoter", ciPub)

	// Build both platforms from this tree, as hack/image.sh does.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	rel, err := selfimage.Build(ctx, selfimage.Spec{Dir: "..", Out: t.TempDir(), Version: "v0.0.0-e2e"})
	if err != nil {
		t.Fatalf("building promoter's image: %v", err)
	}
	t.Logf("built %s (commit %s) for %d platforms in %s", rel.Version, rel.Revision, len(rel.Images), time.Since(start).Round(time.Second))
	sha := strings.TrimSuffix(rel.Revision, "-dirty")

	// The release workflow's order: by digest (with the SBOM), sign, then tag.
	repo, err := name.NewRepository(staging)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := selfimage.Push(ctx, rel, selfimage.Target{Repo: repo, Tag: sha})
	if err != nil {
		t.Fatalf("pushing by digest: %v", err)
	}
	staged := map[string]selfimage.PushedImage{}
	for _, p := range pushed.Images {
		staged[p.Platform] = p
		if want := sha + "-" + types.MustPlatform(p.Platform).Architecture; p.ArchTag != want {
			t.Errorf("%s: arch tag %s, want %s", p.Platform, p.ArchTag, want)
		}
		cosignSign(t, cosign, ciKey, "ci-pw", staging+"@"+p.Digest)
		t.Logf("staged %s %s (%d bytes, SBOM %s), signed by CI", p.Platform, p.Digest, p.Size, p.SBOM)
	}
	if err := selfimage.TagArchImages(ctx, repo, pushed.Images); err != nil {
		t.Fatalf("tagging: %v", err)
	}

	r := d.waitPhase(t, "promoter", sha, 3*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
	if r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[release].Digest != r.Index {
		t.Fatalf("revision %s: %+v", sha, r)
	}
	kids := testenv.IndexChildren(t, release+":"+sha)
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if kids[p] != staged[p].Digest {
			t.Errorf("the promoted index's %s child is %s, want the staged %s", p, kids[p], staged[p].Digest)
		}
		if e := r.Platforms[p].Evidence; e == nil || e.Kind != types.EvidenceSignature || e.Digest != staged[p].Digest {
			t.Errorf("%s evidence %+v, want the CI signature of %s", p, e, staged[p].Digest)
		}
	}

	t.Run("cosign verifies the index and both children at the release registry", func(t *testing.T) {
		for _, dg := range []string{r.Index, kids["linux/amd64"], kids["linux/arm64"]} {
			cosignVerify(t, cosign, env.Pub, release+"@"+dg)
		}
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			// CI's signature travelled with the image.
			cosignVerify(t, cosign, ciPub, release+"@"+kids[p])
		}
	})

	t.Run("each child has its SBOM referrer at the release registry", func(t *testing.T) {
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			child := mustDigest(t, release+"@"+kids[p])
			idx, err := remote.Referrers(child)
			if err != nil {
				t.Fatalf("referrers of %s: %v", child, err)
			}
			viaAPI := sbomsIn(t, idx)
			// distribution v3.1.2 has no referrers API: the list is the fallback tag.
			fallback := child.Context().Tag(strings.Replace(kids[p], ":", "-", 1))
			fidx, err := remote.Index(fallback)
			if err != nil {
				t.Fatalf("fallback tag %s: %v", fallback, err)
			}
			viaTag := sbomsIn(t, fidx)
			if len(viaAPI) != 1 || len(viaTag) != 1 || viaAPI[0] != staged[p].SBOM || viaTag[0] != staged[p].SBOM {
				t.Fatalf("%s: SBOM referrers %v (listing), %v (fallback tag %s), want the staged %s", p, viaAPI, viaTag, fallback, staged[p].SBOM)
			}
			doc := readSBOM(t, child.Context().Digest(staged[p].SBOM))
			for _, want := range []string{`"spdxVersion": "SPDX-2.3"`, `"name": "github.com/google/go-containerregistry"`, sha, p} {
				if !strings.Contains(doc, want) {
					t.Errorf("%s SBOM does not contain %s", p, want)
				}
			}
		}
	})

	t.Run("the promoted binary runs and names its commit", func(t *testing.T) {
		p := runtime.GOOS + "/" + runtime.GOARCH
		dg, ok := kids[p]
		if !ok {
			t.Fatalf("no %s child in %v", p, kids)
		}
		img, err := remote.Image(mustDigest(t, release+"@"+dg))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != selfimage.BinaryPath ||
			cf.Config.Labels[selfimage.AnnotationRevision] != sha {
			t.Errorf("config: user %q, entrypoint %v, labels %v", cf.Config.User, cf.Config.Entrypoint, cf.Config.Labels)
		}
		bin := filepath.Join(t.TempDir(), "promoter")
		extractFile(t, img, selfimage.BinaryPath, bin)
		out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s version: %v\n%s", bin, err, out)
		}
		t.Logf("promoted %s binary:\n%s", p, out)
		for _, want := range []string{"promoter v0.0.0-e2e\n", "commit: " + rel.Revision + "\n"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("promoter version printed:\n%s\nwant a line %q", out, strings.TrimSpace(want))
			}
		}
	})

	t.Run("the chart installs the promoted index by digest", func(t *testing.T) {
		ref := release + "@" + r.Index
		objs := renderChart(t, "image.repository="+release, "image.digest="+r.Index, "image.tag=ignored")
		var images []string
		for _, o := range objs {
			for _, line := range strings.Split(string(o.doc), "\n") {
				if img, ok := strings.CutPrefix(strings.TrimSpace(line), "image: "); ok && strings.Contains(img, "promoter-dev/promoter") {
					images = append(images, strings.Trim(img, `"`))
				}
			}
		}
		if len(images) < 2 {
			t.Fatalf("the chart rendered %d promoter containers (%v), want the daemon's and the builder agent's", len(images), images)
		}
		for _, img := range images {
			if img != ref {
				t.Errorf("a container runs %s, want the promoted index %s", img, ref)
			}
		}
	})
}

func mustDigest(t *testing.T, ref string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sbomsIn lists the SBOM referrers (artifactType application/spdx+json) of a referrers index.
func sbomsIn(t *testing.T, idx v1.ImageIndex) []string {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range im.Manifests {
		if m.ArtifactType == selfimage.SBOMMediaType {
			out = append(out, m.Digest.String())
		}
	}
	return out
}

// readSBOM reads the one layer of the SBOM artifact at d.
func readSBOM(t *testing.T, d name.Digest) string {
	t.Helper()
	art, err := remote.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	m, err := art.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != selfimage.SBOMMediaType || m.Subject == nil || len(m.Layers) != 1 {
		t.Fatalf("SBOM artifact %s: %+v", d, m)
	}
	l, err := art.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("SBOM %s is not JSON: %v", d, err)
	}
	return string(b)
}

// extractFile writes the file at path in img (the topmost layer that has it) to dst,
// executable.
func extractFile(t *testing.T, img v1.Image, path, dst string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(path, "/")
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				t.Fatal(err)
			}
			if strings.TrimPrefix(h.Name, "./") != want {
				continue
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		rc.Close()
	}
	t.Fatalf("no %s in the image", path)
}
