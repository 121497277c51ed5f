package merge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

var (
	t1 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	t2 = time.Date(2026, 11, 1, 11, 30, 0, 0, time.UTC)
)

func TestBuildIsDeterministicAndValid(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo := reg.Host + "/team/app"
	testenv.Push(t, repo+":abc-amd64", testenv.PlatformImage(t, "linux/amd64", t1))
	testenv.Push(t, repo+":abc-arm64", testenv.PlatformImage(t, "linux/arm64", t2))
	testenv.Push(t, repo+":abc-arm-v7", testenv.PlatformImage(t, "linux/arm/v7", t1))
	c := registry.Client{}
	ctx := context.Background()

	children := []Child{
		{Ref: repo + ":abc-arm64", Platform: types.MustPlatform("linux/arm64")},
		{Ref: repo + ":abc-arm-v7", Platform: types.MustPlatform("linux/arm/v7")},
		{Ref: repo + ":abc-amd64", Platform: types.MustPlatform("linux/amd64")},
	}
	req := Request{Target: repo + ":abc", Children: children, Revision: "abc", Source: "https://git.example/team/app"}
	first, err := Build(ctx, c, req)
	if err != nil {
		t.Fatal(err)
	}
	// Reversed input order, and platforms read from the configs: same index.
	var rev []Child
	for i := len(children) - 1; i >= 0; i-- {
		rev = append(rev, Child{Ref: children[i].Ref})
	}
	second, err := Build(ctx, c, Request{Target: req.Target, Children: rev, Revision: "abc", Source: req.Source})
	if err != nil {
		t.Fatal(err)
	}
	if first.Digest != second.Digest {
		t.Fatalf("same inputs gave different indexes:\n%s\n%s", first.Manifest, second.Manifest)
	}

	if out, err := Push(ctx, c, req.Target, first); err != nil || out != Pushed {
		t.Fatalf("Push: %v %v", out, err)
	}
	if out, err := Push(ctx, c, req.Target, first); err != nil || out != Exists {
		t.Fatalf("second Push: got %v %v, want exists", out, err)
	}

	ref, _ := name.ParseReference(req.Target, name.Insecure)
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	if d := testenv.Digest(t, idx); d != first.Digest {
		t.Fatalf("registry holds %s, built %s", d, first.Digest)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("media type %s, want OCI index", im.MediaType)
	}
	var got []string
	for _, m := range im.Manifests {
		got = append(got, types.Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, Variant: m.Platform.Variant}.String())
	}
	if want := "linux/amd64 linux/arm/v7 linux/arm64"; strings.Join(got, " ") != want {
		t.Errorf("children %v, want %s in that order", got, want)
	}
	wantAnn := map[string]string{
		AnnotationRevision: "abc",
		AnnotationSource:   "https://git.example/team/app",
		AnnotationCreated:  "2026-11-01T11:30:00Z", // the latest child, not the clock
	}
	for k, v := range wantAnn {
		if im.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, im.Annotations[k], v)
		}
	}
}

func TestBuildFlattensBuildKitIndex(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo := reg.Host + "/app"
	amd := testenv.PlatformImage(t, "linux/amd64", t1)
	bk := testenv.BuildKitIndex(t, amd)
	testenv.Push(t, repo+":r1-amd64", bk)
	testenv.Push(t, repo+":r1-arm64", testenv.PlatformImage(t, "linux/arm64", t1))
	ctx := context.Background()
	res, err := Build(ctx, registry.Client{}, Request{Target: repo + ":r1", Revision: "r1", Children: []Child{
		{Ref: repo + ":r1-amd64", Platform: types.MustPlatform("linux/amd64")},
		{Ref: repo + ":r1-arm64", Platform: types.MustPlatform("linux/arm64")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, registry.Client{}, repo+":r1", res); err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(res.Index); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	im, _ := res.Index.IndexManifest()
	if len(im.Manifests) != 3 {
		t.Fatalf("want 2 images + 1 attestation, got %d manifests", len(im.Manifests))
	}
	if im.Manifests[0].Digest.String() != testenv.Digest(t, amd) {
		t.Errorf("first child is %s, want the amd64 image %s out of the BuildKit index", im.Manifests[0].Digest, testenv.Digest(t, amd))
	}
	att := im.Manifests[2]
	if att.Platform == nil || att.Platform.OS != "unknown" || att.Annotations["vnd.docker.reference.digest"] != testenv.Digest(t, amd) ||
		att.Annotations["vnd.docker.reference.type"] != "attestation-manifest" {
		t.Errorf("attestation not kept as BuildKit writes it: %+v", att)
	}
	if len(res.Children[0].Attestations) != 1 {
		t.Errorf("result children: %+v", res.Children)
	}
}

func TestBuildRefusesWrongPlatform(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo := reg.Host + "/app"
	testenv.Push(t, repo+":r2-amd64", testenv.PlatformImage(t, "linux/arm64", t1)) // wrong image under the amd64 tag
	_, err := Build(context.Background(), registry.Client{}, Request{Target: repo + ":r2", Children: []Child{
		{Ref: repo + ":r2-amd64", Platform: types.MustPlatform("linux/amd64")},
	}})
	var pm *PlatformMismatchError
	if !errors.As(err, &pm) || !errors.Is(err, ErrPlatform) {
		t.Fatalf("got %v, want PlatformMismatchError", err)
	}
	for _, want := range []string{repo + ":r2-amd64", "expected platform linux/amd64", "says linux/arm64"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestPushNeverMovesATag(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo := reg.Host + "/app"
	testenv.Push(t, repo+":r3-amd64", testenv.PlatformImage(t, "linux/amd64", t1))
	squatter := testenv.PlatformImage(t, "linux/amd64", t2)
	testenv.Push(t, repo+":r3", squatter)
	ctx := context.Background()
	res, err := Build(ctx, registry.Client{}, Request{Target: repo + ":r3", Children: []Child{{Ref: repo + ":r3-amd64"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Push(ctx, registry.Client{}, repo+":r3", res)
	var ce *types.TagImmutableError
	if !errors.As(err, &ce) || ce.Existing != testenv.Digest(t, squatter) || ce.Want != res.Digest {
		t.Fatalf("got %v, want TagImmutableError naming both digests", err)
	}
	ref, _ := name.ParseReference(repo+":r3", name.Insecure)
	d, err := remote.Head(ref)
	if err != nil || d.Digest.String() != testenv.Digest(t, squatter) {
		t.Fatalf("tag moved: %v %v", d, err)
	}
}

func TestBuildErrors(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo := reg.Host + "/app"
	testenv.Push(t, repo+":a", testenv.PlatformImage(t, "linux/amd64", t1))
	testenv.Push(t, repo+":b", testenv.PlatformImage(t, "linux/amd64", t2))
	ctx := context.Background()
	cases := []struct {
		name     string
		children []Child
		want     string
	}{
		{"none", nil, "nothing to merge"},
		{"missing", []Child{{Ref: repo + ":nope"}}, "not found"},
		{"duplicate platform", []Child{{Ref: repo + ":a"}, {Ref: repo + ":b"}}, "both linux/amd64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(ctx, registry.Client{}, Request{Target: repo + ":x", Children: tc.children})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
