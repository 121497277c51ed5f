package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ToolDir is where .ci/run installs the peer tools (cosign, crane, regctl, helm, registry) with
// `go install`: $PROMOTER_TOOLS, else $HOME/.cache/promoter/bin.
func ToolDir() string {
	if d := os.Getenv("PROMOTER_TOOLS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "promoter", "bin")
}

// Tool finds a peer tool in ToolDir or on PATH; when it is missing the test fails in CI
// and is skipped elsewhere, naming the command that installs it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p := filepath.Join(ToolDir(), name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Require(t, "%s not found in %s or on PATH (run `bash hack/tools.sh` to install it)", name, ToolDir())
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
