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
	ciKey, ciPub := writeKeyPair(t, t.TempDir(), "ci-pw")

	d := env.startTrusting(t, "promoter", ciPub)

	// Build both platforms from this tree, as hack/image.sh does.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	rel := buildSelfImage(ctx, t)
	sr := &selfRelease{cosign: cosign, release: env.Dest, pub: env.Pub, ciPub: ciPub,
		revision: rel.Revision, sha: strings.TrimSuffix(rel.Revision, "-dirty")}
	sr.staged = stageSelfImage(ctx, t, rel, env.Staging, sr.sha, cosign, ciKey)

	sr.r = d.waitPhase(t, "promoter", sr.sha, 3*time.Minute, types.PhasePromoted, types.PhaseFailed, types.PhaseConflicted)
	if r := sr.r; r.Phase != types.PhasePromoted || !r.Signed || r.Promotions[sr.release].Digest != r.Index {
		t.Fatalf("revision %s: %+v", sr.sha, r)
	}
	sr.kids = testenv.IndexChildren(t, sr.release+":"+sr.sha)
	sr.checkPromotedChildren(t)

	t.Run("cosign verifies the index and both children at the release registry", sr.checkCosignVerifies)
	t.Run("each child has its SBOM referrer at the release registry", sr.checkSBOMReferrers)
	t.Run("the promoted binary runs and names its commit", func(t *testing.T) { sr.checkBinaryRuns(ctx, t) })
	t.Run("the chart installs the promoted index by digest", sr.checkChartByDigest)
}

// buildSelfImage builds promoter's image for both platforms from this tree, as
// hack/image.sh does.
func buildSelfImage(ctx context.Context, t *testing.T) *selfimage.Release {
	t.Helper()
	start := time.Now()
	rel, err := selfimage.Build(ctx, selfimage.Spec{Dir: "..", Out: t.TempDir(), Version: "v0.0.0-e2e"})
	if err != nil {
		t.Fatalf("building promoter's image: %v", err)
	}
	t.Logf("built %s (commit %s) for %d platforms in %s", rel.Version, rel.Revision, len(rel.Images), time.Since(start).Round(time.Second))
	return rel
}

// stageSelfImage pushes rel to the staging repository in the release workflow's order:
// by digest (with the SBOM), signed by CI with ciKey through the cosign CLI, then tagged
// <sha>-<arch>. It returns the pushed images by platform.
func stageSelfImage(ctx context.Context, t *testing.T, rel *selfimage.Release, staging, sha, cosign, ciKey string) map[string]selfimage.PushedImage {
	t.Helper()
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
	return staged
}

// selfRelease is what TestPromoterReleasesItself checks at the release registry: promoter's
// image, built at commit sha, staged, then promoted by the daemon.
type selfRelease struct {
	cosign string
	// release is the release registry's repository.
	release string
	// pub and ciPub are promoter's and CI's public keys.
	pub, ciPub string
	// revision is the commit the build recorded ("-dirty" when the tree was); sha is it
	// without the suffix, the revision's name and tag.
	revision, sha string
	staged        map[string]selfimage.PushedImage // platform → what CI staged
	r             *types.Revision
	kids          map[string]string // platform → the promoted index's child
}

// checkPromotedChildren checks the promoted index holds the staged images, each let in by
// CI's signature.
func (sr *selfRelease) checkPromotedChildren(t *testing.T) {
	t.Helper()
	for _, p := range bothArches {
		if sr.kids[p] != sr.staged[p].Digest {
			t.Errorf("the promoted index's %s child is %s, want the staged %s", p, sr.kids[p], sr.staged[p].Digest)
		}
		if e := sr.r.Platforms[p].Evidence; e == nil || e.Kind != types.EvidenceSignature || e.Digest != sr.staged[p].Digest {
			t.Errorf("%s evidence %+v, want the CI signature of %s", p, e, sr.staged[p].Digest)
		}
	}
}

func (sr *selfRelease) checkCosignVerifies(t *testing.T) {
	for _, dg := range []string{sr.r.Index, sr.kids["linux/amd64"], sr.kids["linux/arm64"]} {
		cosignVerify(t, sr.cosign, sr.pub, sr.release+"@"+dg)
	}
	for _, p := range bothArches {
		// CI's signature travelled with the image.
		cosignVerify(t, sr.cosign, sr.ciPub, sr.release+"@"+sr.kids[p])
	}
}

func (sr *selfRelease) checkSBOMReferrers(t *testing.T) {
	for _, p := range bothArches {
		sr.checkSBOMReferrer(t, p)
	}
}

// checkSBOMReferrer checks platform p's child at the release registry lists the staged
// SBOM as its one referrer, and that the SBOM describes this build.
func (sr *selfRelease) checkSBOMReferrer(t *testing.T, p string) {
	t.Helper()
	child := mustDigest(t, sr.release+"@"+sr.kids[p])
	idx, err := remote.Referrers(child)
	if err != nil {
		t.Fatalf("referrers of %s: %v", child, err)
	}
	viaAPI := sbomsIn(t, idx)
	// distribution v3.1.2 has no referrers API: the list is the fallback tag.
	fallback := child.Context().Tag(strings.Replace(sr.kids[p], ":", "-", 1))
	fidx, err := remote.Index(fallback)
	if err != nil {
		t.Fatalf("fallback tag %s: %v", fallback, err)
	}
	viaTag := sbomsIn(t, fidx)
	want := sr.staged[p].SBOM
	if len(viaAPI) != 1 || len(viaTag) != 1 || viaAPI[0] != want || viaTag[0] != want {
		t.Fatalf("%s: SBOM referrers %v (listing), %v (fallback tag %s), want the staged %s", p, viaAPI, viaTag, fallback, want)
	}
	doc := readSBOM(t, child.Context().Digest(want))
	for _, want := range []string{`"spdxVersion": "SPDX-2.3"`, `"name": "github.com/google/go-containerregistry"`, sr.sha, p} {
		if !strings.Contains(doc, want) {
			t.Errorf("%s SBOM does not contain %s", p, want)
		}
	}
}

// checkBinaryRuns runs the promoted binary of this machine's platform and checks its
// image config and that it names the commit it was built from.
func (sr *selfRelease) checkBinaryRuns(ctx context.Context, t *testing.T) {
	p := runtime.GOOS + "/" + runtime.GOARCH
	dg, ok := sr.kids[p]
	if !ok {
		t.Fatalf("no %s child in %v", p, sr.kids)
	}
	img, err := remote.Image(mustDigest(t, sr.release+"@"+dg))
	if err != nil {
		t.Fatal(err)
	}
	sr.checkImageConfig(t, img)
	bin := filepath.Join(t.TempDir(), "promoter")
	extractFile(t, img, selfimage.BinaryPath, bin)
	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	t.Logf("promoted %s binary:\n%s", p, out)
	for _, want := range []string{"promoter v0.0.0-e2e\n", "commit: " + sr.revision + "\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("promoter version printed:\n%s\nwant a line %q", out, strings.TrimSpace(want))
		}
	}
}

// checkImageConfig checks img runs its one binary as the nonroot user and is labelled
// with the commit.
func (sr *selfRelease) checkImageConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != selfimage.BinaryPath ||
		cf.Config.Labels[selfimage.AnnotationRevision] != sr.sha {
		t.Errorf("config: user %q, entrypoint %v, labels %v; want user 65532, entrypoint [%s], label %s=%s",
			cf.Config.User, cf.Config.Entrypoint, cf.Config.Labels, selfimage.BinaryPath, selfimage.AnnotationRevision, sr.sha)
	}
}

func (sr *selfRelease) checkChartByDigest(t *testing.T) {
	ref := sr.release + "@" + sr.r.Index
	images := chartPromoterImages(t, "image.repository="+sr.release, "image.digest="+sr.r.Index, "image.tag=ignored")
	if len(images) < 2 {
		t.Fatalf("the chart rendered %d promoter containers (%v), want the daemon's and the builder agent's", len(images), images)
	}
	for _, img := range images {
		if img != ref {
			t.Errorf("a container runs %s, want the promoted index %s", img, ref)
		}
	}
}

// chartPromoterImages renders the chart with set and returns the image of each
// promoter container it renders.
func chartPromoterImages(t *testing.T, set ...string) []string {
	t.Helper()
	var images []string
	for _, o := range renderChart(t, set...) {
		for _, line := range strings.Split(string(o.doc), "\n") {
			if img, ok := strings.CutPrefix(strings.TrimSpace(line), "image: "); ok && strings.Contains(img, "promoter-dev/promoter") {
				images = append(images, strings.Trim(img, `"`))
			}
		}
	}
	return images
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
