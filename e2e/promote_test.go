package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestSignedIndexPromotedToTwoRegistries is issue 5's end-to-end check with the real CLIs:
// a 2-platform index signed in registry A is promoted to B and C with `promoter promote`;
// at both, `promoter verify` and the real cosign CLI verify the index and each child, and
// crane and regctl report the digest of A.
func TestSignedIndexPromotedToTwoRegistries(t *testing.T) {
	bin := buildPromoter(t)
	a, b, c := testenv.StartRegistry(t), testenv.StartRegistry(t), testenv.StartRegistry(t)
	created := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	src := a.Host + "/team/app"
	testenv.Push(t, src+":v1-amd64", testenv.PlatformImage(t, "linux/amd64", created))
	testenv.Push(t, src+":v1-arm64", testenv.PlatformImage(t, "linux/arm64", created))
	dir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		home := t.TempDir()
		// Offline: no transparency log, CA or TUF mirror may be reached.
		cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
			"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost",
			"COSIGN_PASSWORD=pw")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	run(bin, "keygen")
	index := run(bin, "merge", "--target", src+":v1", src+":v1-amd64", src+":v1-arm64")
	run(bin, "sign", "--key", "cosign.key", src+":v1")
	run(bin, "promote", src+":v1", b.Host+"/prod/app", c.Host+"/prod/app")

	crane, regctl, cosign := testenv.Tool(t, "crane"), testenv.Tool(t, "regctl"), testenv.Tool(t, "cosign")
	for _, reg := range []string{b.Host, c.Host} {
		dst := reg + "/prod/app:v1"
		if got := run(crane, "digest", "--insecure", dst); got != index {
			t.Errorf("crane digest %s = %s, want %s", dst, got, index)
		}
		if got := run(regctl, "image", "digest", "--host", "reg="+reg+",tls=disabled", dst); got != index {
			t.Errorf("regctl image digest %s = %s, want %s", dst, got, index)
		}
		out := run(bin, "verify", "--key", "cosign.pub", dst)
		if n := strings.Count(out, "sha256:"); n != 3 {
			t.Errorf("promoter verify %s checked %d digests, want 3:\n%s", dst, n, out)
		}
		children := childDigests(t, crane, dst)
		for _, d := range append([]string{index}, children...) {
			run(cosign, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog", reg+"/prod/app@"+d)
		}
	}
}

// childDigests lists the manifests of an index as crane sees them.
func childDigests(t *testing.T, crane, ref string) []string {
	t.Helper()
	out, err := exec.Command(crane, "manifest", "--insecure", ref).Output()
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, part := range strings.Split(string(out), `"digest":"`)[1:] {
		if d, _, ok := strings.Cut(part, `"`); ok && strings.HasPrefix(d, "sha256:") {
			ds = append(ds, d)
		}
	}
	if len(ds) != 2 {
		t.Fatalf("%s: %d children in %s", ref, len(ds), out)
	}
	return ds
}
