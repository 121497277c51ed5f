package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDevDemo runs the README's "run it" command exactly as a user would on a fresh
// clone, then an installed binary from a directory without the repository (the example
// source is embedded), then that binary with --source naming a tree of the user's own. Each
// ends with a promoted index verified for the index and both platforms.
func TestDevDemo(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin := buildDevBinary(ctx, t, root)
	own := t.TempDir()
	for name, content := range map[string]string{"Dockerfile": "FROM scratch\nCOPY page.html /\n", "page.html": "<p>mine</p>\n"} {
		if err := os.WriteFile(filepath.Join(own, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	revisions := map[string]string{}
	for _, tc := range []devDemoCase{
		{name: "go run from the repository root", command: []string{"go", "run", "-tags", "dev", "./cmd/promoter"}, dir: root},
		{name: "installed binary in a directory without examples", command: []string{bin}, dir: t.TempDir(), logToFile: true},
		{name: "--source replaces the embedded example", command: []string{bin}, flags: []string{"--source", own}, dir: t.TempDir(), source: own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			revisions[tc.name] = tc.run(ctx, t, root)
		})
	}
	// The revision names the tree's content: the embedded example is the same revision
	// from whichever directory it runs; a tree of one's own is another revision.
	if a, b := revisions["go run from the repository root"], revisions["installed binary in a directory without examples"]; a == "" || a != b {
		t.Errorf("the embedded example built revision %s from an empty directory and %s from the repository root; want the same", b, a)
	}
	if c := revisions["--source replaces the embedded example"]; c == "" || c == revisions["go run from the repository root"] {
		t.Errorf("--source built revision %s, the same as the embedded example's", c)
	}
}

// buildDevBinary builds the promoter binary with the dev command (-tags dev) from the
// repository at root.
func buildDevBinary(ctx context.Context, t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "promoter")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "dev", "-o", bin, "./cmd/promoter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// devDemoCase is one way TestDevDemo runs `promoter dev --demo`.
type devDemoCase struct {
	name    string
	command []string // what runs promoter
	flags   []string // after dev --demo
	dir     string   // the working directory
	source  string   // the build.dir the generated config must name; "" for the embedded tree's copy
	// logToFile leaves --log-level out: the daemon's log then goes to the data dir's
	// promoter.log, and the output is only what the README's transcript shows.
	logToFile bool
}

// run runs the demo in a fresh data directory under repository root, checks what it
// printed and wrote, and returns the revision it built.
func (tc devDemoCase) run(ctx context.Context, t *testing.T, root string) string {
	dataDir := t.TempDir()
	args := append(tc.command[1:], "dev", "--demo", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	if !tc.logToFile {
		args = append(args, "--log-level", "warn")
	}
	args = append(args, tc.flags...)
	cmd := exec.CommandContext(ctx, tc.command[0], args...)
	cmd.Dir = tc.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promoter dev --demo in %s: %v\n%s", tc.dir, err, out)
	}
	text := string(out)
	checkDemoTranscript(t, text)
	if tc.logToFile {
		checkDemoLogFile(t, text, filepath.Join(dataDir, "promoter.log"))
	}
	want := tc.source
	if want == "" {
		want = filepath.Join(dataDir, "examples", "hello")
		checkEmbeddedExample(t, root, want)
	}
	if !strings.Contains(text, "example source      "+want+"\n") {
		t.Errorf("banner does not name the example source %s:\n%s", want, text)
	}
	cfg, err := os.ReadFile(filepath.Join(dataDir, "promoter.yaml"))
	if err != nil || !strings.Contains(string(cfg), "dir: \""+want+"\"") {
		t.Errorf("generated config (%v) does not build %s:\n%s", err, want, cfg)
	}
	m := regexp.MustCompile(`source change  hello@([0-9a-f]{40}) accepted`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no source change line:\n%s", text)
	}
	return m[1]
}

// checkDemoTranscript checks the demo's output tells each step, through a promoted index
// verified for the index and both platforms.
func checkDemoTranscript(t *testing.T, text string) {
	t.Helper()
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

// checkDemoLogFile checks the daemon logged to logPath, which the banner names, and not
// to the output text.
func checkDemoLogFile(t *testing.T, text, logPath string) {
	t.Helper()
	if !strings.Contains(text, "daemon log          "+logPath+"\n") {
		t.Errorf("banner does not name the daemon log %s:\n%s", logPath, text)
	}
	if strings.Contains(text, "level=") {
		t.Errorf("the daemon's log lines reached the output:\n%s", text)
	}
	if log, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(log), "level=INFO msg=\"promoter serving\"") {
		t.Errorf("daemon log %s (%v) lacks the daemon's start line:\n%s", logPath, err, lastLines(string(log), 10))
	}
}

// checkEmbeddedExample checks the embedded example source written to dir is
// examples/hello of the repository at root.
func checkEmbeddedExample(t *testing.T, root, dir string) {
	t.Helper()
	for _, f := range []string{"Dockerfile", "index.html"} {
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("the embedded example source was not written: %v", err)
		}
		if disk, _ := os.ReadFile(filepath.Join(root, "examples", "hello", f)); string(got) != string(disk) {
			t.Errorf("%s differs from examples/hello/%s", filepath.Join(dir, f), f)
		}
	}
}
