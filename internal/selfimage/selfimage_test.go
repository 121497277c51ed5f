package selfimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

var created = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// testRelease assembles images as Build does around a compiled promoter, without
// compiling one: the "binary" is a small file, its build info the test's own.
func testRelease(t *testing.T, platforms ...string) *Release {
	t.Helper()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	out := t.TempDir()
	exe := filepath.Join(out, "promoter")
	if err := os.WriteFile(exe, []byte("#!/not/a/shell\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rel := &Release{Revision: "0123456789abcdef0123456789abcdef01234567", Version: "v1.2.3", Source: DefaultSource, Created: created}
	base, err := layer(filepath.Join(out, "base.tar"), baseEntries([]byte("-----BEGIN CERTIFICATE-----\n")), created)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range platforms {
		img, err := rel.assemble(binary{path: exe, platform: types.MustPlatform(p), info: info}, base, out)
		if err != nil {
			t.Fatal(err)
		}
		rel.Images = append(rel.Images, img)
	}
	return rel
}

func TestAssembledImage(t *testing.T) {
	rel := testRelease(t, "linux/amd64")
	img := rel.Images[0].Image
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		AnnotationSource:   DefaultSource,
		AnnotationRevision: rel.Revision,
		AnnotationVersion:  "v1.2.3",
		AnnotationCreated:  "2026-12-07T12:00:00Z",
	}
	if diff := cmp.Diff(wantLabels, cf.Config.Labels); diff != "" {
		t.Errorf("config labels (-want +got):\n%s", diff)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantLabels, m.Annotations); diff != "" {
		t.Errorf("manifest annotations (-want +got):\n%s", diff)
	}
	for _, c := range []struct{ name, got, want string }{
		{"user", cf.Config.User, "65532"},
		{"entrypoint", strings.Join(cf.Config.Entrypoint, " "), BinaryPath},
		{"os/arch", cf.OS + "/" + cf.Architecture, "linux/amd64"},
		{"created", cf.Created.UTC().Format(time.RFC3339), "2026-12-07T12:00:00Z"},
	} {
		if c.got != c.want {
			t.Errorf("config %s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	files := filesOf(t, img)
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot 65532:\n%s", files["etc/passwd"].data)
	}
	if !strings.Contains(string(files["etc/group"].data), "nonroot:x:65532:") {
		t.Errorf("/etc/group has no nonroot 65532:\n%s", files["etc/group"].data)
	}
	for _, p := range []string{"etc/ssl/certs/ca-certificates.crt", BinaryPath[1:], "tmp/", "home/nonroot/"} {
		f, ok := files[p]
		if !ok {
			t.Errorf("the image has no /%s", p)
			continue
		}
		if !f.hdr.ModTime.Equal(created) {
			t.Errorf("/%s: time %v, want %v", p, f.hdr.ModTime, created)
		}
	}
	if f := files[BinaryPath[1:]]; f.hdr.Mode&0o111 == 0 {
		t.Errorf("%s is not executable: %o", BinaryPath, f.hdr.Mode)
	}
	if f := files["home/nonroot/"]; f.hdr.Uid != UID {
		t.Errorf("/home/nonroot owned by %d, want %d", f.hdr.Uid, UID)
	}
	for _, sh := range []string{"bin/sh", "bin/busybox", "usr/bin/sh"} {
		if _, ok := files[sh]; ok {
			t.Errorf("the image has a shell: /%s", sh)
		}
	}
}

func TestAssemblyIsDeterministic(t *testing.T) {
	a, b := testRelease(t, "linux/amd64", "linux/arm64"), testRelease(t, "linux/amd64", "linux/arm64")
	for i := range a.Images {
		da, _ := a.Images[i].Image.Digest()
		db, _ := b.Images[i].Image.Digest()
		if da != db {
			t.Errorf("%s: two assemblies gave %s and %s", a.Images[i].Platform, da, db)
		}
		if string(a.Images[i].SBOM) != string(b.Images[i].SBOM) {
			t.Errorf("%s: two SBOMs differ", a.Images[i].Platform)
		}
	}
	la, _ := a.Images[0].Image.Layers()
	lb, _ := a.Images[1].Image.Layers()
	da, _ := la[0].Digest()
	db, _ := lb[0].Digest()
	if da != db {
		t.Errorf("the base layer differs between platforms: %s, %s", da, db)
	}
}

func TestSPDX(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/promoter-dev/promoter", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/google/go-containerregistry", Version: "v0.22.1", Sum: "h1:x"},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v1.1.0"}},
		},
	}
	tests := []struct {
		name        string
		revision    string
		wantPackage []string // name@version of every package, in order
		wantPURL    string
		wantDL      string
	}{
		{
			name:        "clean tree",
			revision:    "abc",
			wantPackage: []string{"github.com/promoter-dev/promoter@v1.2.3", "stdlib@go1.26.8", "github.com/google/go-containerregistry@v0.22.1", "example.com/new@v1.1.0"},
			wantPURL:    "pkg:golang/github.com/google/go-containerregistry@v0.22.1",
			wantDL:      "git+https://github.com/promoter-dev/promoter@abc",
		},
		{
			name:        "dirty tree",
			revision:    "abc-dirty",
			wantPackage: []string{"github.com/promoter-dev/promoter@v1.2.3", "stdlib@go1.26.8", "github.com/google/go-containerregistry@v0.22.1", "example.com/new@v1.1.0"},
			wantPURL:    "pkg:golang/github.com/google/go-containerregistry@v0.22.1",
			wantDL:      "git+https://github.com/promoter-dev/promoter@abc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := spdx(sbomSubject{info: info, platform: "linux/arm64", version: "v1.2.3", revision: tt.revision, source: DefaultSource, created: created})
			if err != nil {
				t.Fatal(err)
			}
			var doc spdxDocument
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.SPDXID != "SPDXRef-DOCUMENT" {
				t.Errorf("header: got %s %s %s, want SPDX-2.3 CC0-1.0 SPDXRef-DOCUMENT", doc.SPDXVersion, doc.DataLicense, doc.SPDXID)
			}
			if doc.CreationInfo.Created != "2026-12-07T12:00:00Z" {
				t.Errorf("created: got %s, want the build time", doc.CreationInfo.Created)
			}
			var got []string
			ids := map[string]bool{}
			for _, p := range doc.Packages {
				got = append(got, p.Name+"@"+p.VersionInfo)
				if ids[p.SPDXID] {
					t.Errorf("SPDXID %s used twice", p.SPDXID)
				}
				ids[p.SPDXID] = true
			}
			if diff := cmp.Diff(tt.wantPackage, got); diff != "" {
				t.Errorf("packages (-want +got):\n%s", diff)
			}
			if got := doc.Packages[2].ExternalRefs[0].ReferenceLocator; got != tt.wantPURL {
				t.Errorf("purl: got %s, want %s", got, tt.wantPURL)
			}
			if got := doc.Packages[0].DownloadLocation; got != tt.wantDL {
				t.Errorf("main downloadLocation: got %s, want %s", got, tt.wantDL)
			}
			if n := len(doc.Relationships); n != len(doc.Packages) {
				t.Errorf("%d relationships, want %d (DESCRIBES + a DEPENDS_ON per dependency)", n, len(doc.Packages))
			}
			for _, r := range doc.Relationships {
				if !ids[r.Related] {
					t.Errorf("relationship %+v names an unknown package", r)
				}
			}
		})
	}
}

func TestPush(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo, err := name.NewRepository(reg.Host + "/promoter-dev/promoter")
	if err != nil {
		t.Fatal(err)
	}
	rel := testRelease(t, "linux/amd64", "linux/arm64")
	const rev = "0123456789abcdef0123456789abcdef01234567"

	byDigest, err := Push(t.Context(), rel, Target{Repo: repo, Tag: rev})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range byDigest.Images {
		if _, err := remote.Head(repo.Tag(p.ArchTag)); err == nil {
			t.Errorf("%s exists before TagArchImages: a by-digest push tagged it", p.ArchTag)
		}
	}
	if err := TagArchImages(t.Context(), repo, byDigest.Images); err != nil {
		t.Fatal(err)
	}
	pushed, err := Push(t.Context(), rel, Target{Repo: repo, Tag: rev, ArchTags: true, Index: true})
	if err != nil {
		t.Fatalf("pushing again: %v", err)
	}
	if diff := cmp.Diff(byDigest.Images, pushed.Images); diff != "" {
		t.Errorf("a second push differs (-first +second):\n%s", diff)
	}
	for _, p := range pushed.Images {
		want := rev + "-" + strings.Split(p.Platform, "/")[1]
		if p.ArchTag != want {
			t.Errorf("%s: arch tag %s, want %s", p.Platform, p.ArchTag, want)
		}
		desc, err := remote.Head(repo.Tag(p.ArchTag))
		if err != nil || desc.Digest.String() != p.Digest {
			t.Errorf("%s:%s: got %v %v, want %s", repo, p.ArchTag, desc, err, p.Digest)
		}
		if p.Size < 1000 {
			t.Errorf("%s: size %d bytes", p.Platform, p.Size)
		}
		checkSBOM(t, repo, p)
	}
	idx, err := remote.Index(repo.Tag(rev))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	if d, _ := idx.Digest(); d.String() != pushed.Index {
		t.Errorf("index digest %s, Push said %s", d, pushed.Index)
	}
	im, _ := idx.IndexManifest()
	if im.Annotations[AnnotationRevision] != rev || len(im.Manifests) != 2 || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Errorf("index manifest: %+v", im)
	}
}

// checkSBOM checks the SBOM of pushed image p in repo: one referrer (also under the
// fallback tag, for registries without the referrers API), a valid artifact whose subject
// is p and whose layer is p's SPDX document.
func checkSBOM(t *testing.T, repo name.Repository, p PushedImage) {
	t.Helper()
	sboms := sbomReferrers(t, repo.Digest(p.Digest))
	if len(sboms) != 1 || sboms[0].Digest.String() != p.SBOM {
		t.Fatalf("%s: SBOM referrers %+v, want one, %s", p.Platform, sboms, p.SBOM)
	}
	// A registry without the referrers API keeps them under the fallback tag.
	fallback := repo.Tag(strings.Replace(p.Digest, ":", "-", 1))
	idx, err := remote.Index(fallback)
	if err != nil {
		t.Fatalf("fallback tag %s: %v", fallback, err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != SBOMMediaType {
		t.Errorf("fallback tag %s: %+v %v", fallback, im, err)
	}
	art, err := remote.Image(repo.Digest(p.SBOM))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(art); err != nil {
		t.Errorf("the SBOM artifact does not validate: %v", err)
	}
	m, _ := art.Manifest()
	if m.Subject == nil || m.Subject.Digest.String() != p.Digest || m.ArtifactType != SBOMMediaType || m.Config.Size != 2 {
		t.Errorf("SBOM manifest: %+v", m)
	}
	layers, _ := art.Layers()
	rc, _ := layers[0].Compressed()
	b, _ := io.ReadAll(rc)
	var doc spdxDocument
	if err := json.Unmarshal(b, &doc); err != nil || doc.SPDXVersion != "SPDX-2.3" || !strings.Contains(doc.Name, p.Platform) {
		t.Errorf("SBOM layer: %v %s", err, doc.Name)
	}
}

func TestRefusals(t *testing.T) {
	repo, _ := name.NewRepository("127.0.0.1:1/x")
	if _, err := Push(t.Context(), &Release{}, Target{Repo: repo}); err == nil || !strings.Contains(err.Error(), "no tag") {
		t.Errorf("got %v, want a refusal naming the missing tag", err)
	}
	if _, err := Build(t.Context(), Spec{}); err == nil {
		t.Error("Build without Dir and Out: got no error")
	}
	if err := WithLogger(nil)(&options{}); err == nil {
		t.Error("WithLogger(nil): got no error")
	}
}

// sbomReferrers lists the SBOM referrers of d (the referrers API or its fallback tag).
func sbomReferrers(t *testing.T, d name.Digest) []v1.Descriptor {
	t.Helper()
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatalf("referrers of %s: %v", d, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Descriptor
	for _, m := range im.Manifests {
		if m.ArtifactType == SBOMMediaType {
			out = append(out, m)
		}
	}
	return out
}

type file struct {
	hdr  *tar.Header
	data []byte
}

// filesOf reads every entry of every layer of img.
func filesOf(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]file{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
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
				t.Fatal(err)
			}
			var data []byte
			if h.Typeflag == tar.TypeReg && h.Size < 1<<20 {
				data, _ = io.ReadAll(tr)
			}
			files[h.Name] = file{hdr: h, data: data}
		}
		rc.Close()
	}
	return files
}
