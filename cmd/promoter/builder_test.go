package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/bus/bustest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

func TestBuilderCommandRefusesIncompleteSetup(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no platforms", []string{"builder", "--nats-url", "nats://127.0.0.1:1"}, "--platforms"},
		{"no nats", []string{"builder", "--platforms", "linux/arm64"}, "--nats-url"},
		{"bad platform", []string{"builder", "--platforms", "linux/arm65", "--nats-url", "nats://127.0.0.1:1"}, "builder.platforms[0]"},
		{"bad executor", []string{"builder", "--platforms", "linux/arm64", "--nats-url", "nats://127.0.0.1:1", "--executor", "docker"}, "want kubernetes or local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tc.args)
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			err := root.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("promoter %s: got %v, want an error mentioning %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
}

// promoter builder --executor local takes a request from the work queue, pushes the image
// and reports the result, then stops cleanly when its context ends.
func TestBuilderCommandBuildsLocally(t *testing.T) {
	n := testenv.StartNATS(t)
	reg := testenv.StartRegistry(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "promoter.yaml")
	cfg := fmt.Sprintf(`registries:
  - {host: %q, insecure: true}
pipelines:
  - name: web
    source: {repo: https://git.example/acme/web.git}
    platforms: [linux/arm64]
    build: {executor: local, dir: %q}
    staging: %s/acme/web
`, reg.Host, src, reg.Host)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := bustest.Open(t, n.URL)

	runCtx, stop := context.WithCancel(ctx)
	root := newRootCmd()
	var stderr bytes.Buffer
	root.SetErr(&stderr)
	root.SetArgs([]string{"builder", "--executor", "local", "--config", cfgFile, "--platforms", "linux/arm64",
		"--nats-url", n.URL, "--metrics", ""})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(runCtx) }()

	req := types.BuildRequest{Pipeline: "web", Revision: "abc123", Platform: types.MustPlatform("linux/arm64"),
		Image: reg.Host + "/acme/web:abc123-arm64"}
	if _, err := b.Publish(ctx, types.BuildSubject(req.Platform), req.MsgID(), req); err != nil {
		t.Fatal(err)
	}
	var stored []bus.StoredMessage
	until, _ := ctx.Deadline()
	err := testenv.WaitFor(time.Until(until), func() (err error) {
		stored, err = b.Stored(ctx, bus.StreamEvents, types.SubjectBuildResults)
		if err == nil && len(stored) == 0 {
			err = errors.New("none published")
		}
		return err
	})
	if err != nil {
		t.Fatalf("no build result: %v\nstderr:\n%s", err, stderr.String())
	}
	var res types.BuildResult
	if err := json.Unmarshal(stored[0].Data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != types.BuildSucceeded || res.Attempt != 1 {
		t.Errorf("result: %+v, want succeeded at attempt 1", res)
	}
	ref, _ := name.ParseReference(req.Image)
	if _, err := remote.Head(ref); err != nil {
		t.Errorf("pushed image %s: %v", req.Image, err)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("builder after stop: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("builder still running 10s after its context ended\nstderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "builder agent stopped") {
		t.Errorf("no clean-stop log line in:\n%s", stderr.String())
	}
}
