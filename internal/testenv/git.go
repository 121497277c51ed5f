package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// GitServer serves the bare repositories under Root read-only over the git protocol on a
// loopback port, through the real `git daemon`.
type GitServer struct {
	// Root holds the bare repositories; Root/NAME.git is git://Host/NAME.git.
	Root string
	// Host is "127.0.0.1:PORT".
	Host string
}

// StartGitServer serves the repositories under a new temporary directory. Each connection is
// handed to its own `git daemon --inetd`, so there is no port to guess and nothing to wait
// for. It is stopped when the test ends.
func StartGitServer(t testing.TB) *GitServer {
	t.Helper()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		Require(t, "git not on PATH (run `bash hack/buildkit.sh` to install it)")
	}
	root := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for git: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			wg.Go(func() {
				defer conn.Close()
				f, err := conn.(*net.TCPConn).File()
				if err != nil {
					return
				}
				defer f.Close()
				// safe.directory: git refuses repositories owned by another user, and the
				// daemon may run as root over files a test wrote as anyone.
				cmd := exec.Command(gitPath, "-c", "safe.directory=*", "daemon", "--inetd",
					"--export-all", "--informative-errors", "--base-path="+root, root)
				cmd.Stdin, cmd.Stdout = f, f
				_ = cmd.Run()
			})
		}
	})
	return &GitServer{Root: root, Host: ln.Addr().String()}
}

// CreateRepo commits files (path → content) to a new repository NAME.git on the server and
// returns the repository's git:// URL and the commit SHA.
func (g *GitServer) CreateRepo(t testing.TB, name string, files map[string]string) (url, sha string) {
	t.Helper()
	work := t.TempDir()
	bare := filepath.Join(g.Root, name+".git")
	git(t, work, "init", "-q", "-b", "main")
	sha = commitFiles(t, work, files)
	git(t, work, "clone", "-q", "--bare", work, bare)
	// Let a client fetch a commit by SHA, which BuildKit does for context=URL#<sha>.
	git(t, bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	return "git://" + g.Host + "/" + name + ".git", sha
}

// Commit adds a commit to repository NAME.git on the server that writes files (path →
// content) over its tree, moves main to it and returns its SHA.
func (g *GitServer) Commit(t testing.TB, name string, files map[string]string) (sha string) {
	t.Helper()
	work := t.TempDir()
	git(t, work, "-c", "safe.directory=*", "clone", "-q", filepath.Join(g.Root, name+".git"), ".")
	sha = commitFiles(t, work, files)
	git(t, work, "-c", "safe.directory=*", "push", "-q", "origin", "HEAD:main")
	return sha
}

// commitFiles writes files (path → content) into the work tree and commits them.
func commitFiles(t testing.TB, work string, files map[string]string) (sha string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatalf("writing %s: %v", p, err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatalf("writing %s: %v", p, err)
		}
	}
	git(t, work, "add", "-A")
	git(t, work, "-c", "user.name=promoter test", "-c", "user.email=test@promoter.invalid",
		"commit", "-q", "-m", "test revision")
	sha = strings.TrimSpace(git(t, work, "rev-parse", "HEAD"))
	return sha
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
