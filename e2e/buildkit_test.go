package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestRootlessBuildKitBuildsFromGit runs the default build Job's command for real: rootless
// BuildKit through buildctl-daemonless.sh, as an unprivileged user, builds a Dockerfile with
// a RUN step from a git revision served on loopback and pushes the arch tag to a loopback
// registry. The image's config and its RUN layer's content are then read back.
func TestRootlessBuildKitBuildsFromGit(t *testing.T) {
	reg := testenv.StartRegistry(t)
	bk := testenv.NewBuildKit(t, reg.Host)
	gitsrv := testenv.StartGitServer(t)

	base := reg.Host + "/base:busybox"
	testenv.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))

	repo, sha := gitsrv.CreateRepo(t, "repo", map[string]string{
		"Dockerfile": fmt.Sprintf("FROM %s\nRUN echo built > /built\n", base),
	})
	image := fmt.Sprintf("%s/acme/app:%s-amd64", reg.Host, sha)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := bk.Command(ctx, nil, "buildctl-daemonless.sh", "build",
		"--frontend", "dockerfile.v0",
		"--opt", "context="+repo+"#"+sha,
		"--opt", "platform=linux/amd64",
		"--progress", "plain",
		"--output", "type=image,name="+image+",push=true",
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("buildctl-daemonless.sh build as %s took %s; last lines:\n%s", bk.User, took.Round(time.Millisecond), lastLines(strings.TrimRight(out.String(), "\n"), 20))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}

	checkBuiltImage(t, image)
}

// fileInLayer returns the content of path (no leading slash) in a layer.
func fileInLayer(layer interface {
	Uncompressed() (io.ReadCloser, error)
}, path string) (string, error) {
	rc, err := layer.Uncompressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("no %s in layer (entries: %v)", path, names)
		}
		if err != nil {
			return "", err
		}
		n := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		names = append(names, n)
		if n == path {
			b, err := io.ReadAll(tr)
			return string(b), err
		}
	}
}
