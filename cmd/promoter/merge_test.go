package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

func TestMergeCommand(t *testing.T) {
	reg := testenv.StartRegistry(t)
	repo := reg.Host + "/app"
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	testenv.Push(t, repo+":v1-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	testenv.Push(t, repo+":v1-armv7", testenv.PlatformImage(t, "linux/arm/v7", created))

	// Dry run prints the index and pushes nothing.
	out, _, err := runCLI(t, "merge", "--dry-run", "--target", repo+":v1", repo+":v1-amd64", repo+":v1-armv7")
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Platform struct{ Architecture, Variant string }
		}
	}
	if err := json.Unmarshal([]byte(out), &idx); err != nil || len(idx.Manifests) != 2 || idx.Manifests[1].Platform.Variant != "v7" {
		t.Fatalf("dry-run output %q: %v", out, err)
	}
	ref, _ := name.ParseReference(repo+":v1", name.Insecure)
	if _, err := remote.Head(ref); err == nil {
		t.Fatal("dry run pushed the index")
	}

	// Template form, with the platform checked against each image.
	out, _, err = runCLI(t, "merge", "--target", repo+":v1", "--revision", "v1",
		"--platforms", "linux/amd64,linux/arm/v7", "--template", repo+":{revision}-{arch}{variant}")
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(out)
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(got); err != nil {
		t.Fatal(err)
	}
	if testenv.Digest(t, got) != digest {
		t.Fatalf("printed %s, registry holds %s", digest, testenv.Digest(t, got))
	}

	// Wrong platform for its reference, and a tag that already holds something else.
	_, _, err = runCLI(t, "merge", "--target", repo+":v2", "--revision", "v1",
		"--platforms", "linux/arm64", "--template", repo+":{revision}-amd64")
	if err == nil || !strings.Contains(err.Error(), "expected platform linux/arm64") {
		t.Fatalf("wrong platform: %v", err)
	}
	testenv.Push(t, repo+":taken", testenv.PlatformImage(t, "linux/amd64", created.Add(time.Hour)))
	_, _, err = runCLI(t, "merge", "--target", repo+":taken", repo+":v1-amd64")
	if err == nil || !strings.Contains(err.Error(), "already points at") {
		t.Fatalf("existing tag: %v", err)
	}
	_, _, err = runCLI(t, "merge", "--target", repo+":x", "--platforms", "linux/amd64")
	if err == nil || !strings.Contains(err.Error(), "--template") {
		t.Fatalf("missing template: %v", err)
	}
	// The revision follows the rule of every source.
	for _, rev := range []string{strings.Repeat("a", 300), "feature/x", "a..b"} {
		_, _, err = runCLI(t, "merge", "--target", repo+":x", "--revision", rev,
			"--platforms", "linux/amd64", "--template", repo+":{revision}-amd64")
		if !errors.Is(err, types.ErrInvalidRevision) {
			t.Errorf("--revision %.20s: got %v, want ErrInvalidRevision", rev, err)
		}
	}
}
