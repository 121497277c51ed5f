package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevDemo runs the README's "run it" command exactly as a user would on a fresh
// clone, and checks it ends with a promoted index verified for the index and both
// platforms.
func TestDevDemo(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/promoter", "dev", "--demo",
		"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "warn")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promoter dev --demo: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"build          linux/amd64  succeeded",
		"build          linux/arm64  succeeded",
		"merged         index",
		"signed         index and 2 children",
		"promoted       127.0.0.1:",
		"verified       index",
		"verified       linux/amd64",
		"verified       linux/arm64",
		"is promoted and verified",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
