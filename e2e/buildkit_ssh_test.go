package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// TestRootlessBuildKitBuildsFromSSH runs rootless BuildKit as in
// TestRootlessBuildKitBuildsFromGit, but the repository is private: sshd serves it on
// loopback and accepts one key only, which buildctl forwards as `--ssh default=KEYFILE`.
// Both URL forms build and push an image whose RUN layer is read back: ssh://USER@HOST:PORT/…
// and scp-style USER@HOST:… (port 22 of a spare 127.0.0.N). Without the key, or with
// another one, the build fails and says why.
func TestRootlessBuildKitBuildsFromSSH(t *testing.T) {
	reg := testenv.StartRegistry(t)
	gitsrv := testenv.StartGitServer(t)
	access := gitsrv.ServeSSH(t)

	base := reg.Host + "/base:busybox"
	testenv.Push(t, base, testenv.BusyboxImage(t, "linux/amd64"))
	_, sha := gitsrv.CreateRepo(t, "private", map[string]string{
		"Dockerfile": fmt.Sprintf("FROM %s\nRUN echo built > /built\n", base),
	})

	// git on this host, checking the host key, reaches both URLs: a build failure below is
	// BuildKit's.
	for _, url := range []string{access.URL("private"), access.SCPURL("private")} {
		cmd := exec.Command("git", "ls-remote", url, "main")
		cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND="+access.GitSSHCommand())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git ls-remote %s: %v\n%s", url, err, out)
		}
		if !strings.HasPrefix(string(out), sha) {
			t.Fatalf("git ls-remote %s: got %q, want %s", url, out, sha)
		}
	}

	builds := []struct {
		name string
		url  string
	}{
		{name: "ssh", url: access.URL("private")},
		{name: "scp-style", url: access.SCPURL("private")},
	}
	for _, tc := range builds {
		t.Run(tc.name, func(t *testing.T) {
			// A BuildKit per build: a cached checkout of the commit would let a build pass
			// without fetching it.
			bk := testenv.NewBuildKit(t, reg.Host)
			key := buildUserFile(t, bk, "id_ed25519", access.PrivateKey)
			image := fmt.Sprintf("%s/acme/app:%s-%s-amd64", reg.Host, sha, tc.name)
			if out, err := buildFromGit(t, bk, tc.url+"#"+sha, image, "--ssh", "default="+key); err != nil {
				t.Fatalf("build from %s: %v\n%s", tc.url, err, out)
			}
			checkBuiltImage(t, image)
		})
	}

	failures := []struct {
		name string
		key  []byte // what --ssh default= forwards; no --ssh when nil
		want string
	}{
		// BuildKit asks the client for the "default" agent before it runs git at all.
		{name: "no key", want: `no SSH key "default" forwarded from the client`},
		// sshd refuses the key; git's stderr ends buildctl's error.
		{name: "another key", key: otherKey(t), want: "Permission denied (publickey)"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			bk := testenv.NewBuildKit(t, reg.Host)
			var args []string
			if tc.key != nil {
				args = []string{"--ssh", "default=" + buildUserFile(t, bk, "id_ed25519", tc.key)}
			}
			url := access.URL("private") + "#" + sha
			image := fmt.Sprintf("%s/acme/app:%s-%s", reg.Host, sha, strings.ReplaceAll(tc.name, " ", "-"))
			out, err := buildFromGit(t, bk, url, image, args...)
			if err == nil {
				t.Fatalf("build from %s with %q: succeeded, want it to fail", url, args)
			}
			got := buildctlError(out)
			t.Logf("buildctl's error:\n%s", got)
			if !strings.Contains(got, tc.want) {
				t.Errorf("buildctl's error: got %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

// buildFromGit runs buildctl-daemonless.sh build for the Dockerfile at gitContext (a git
// URL with #REVISION) on linux/amd64, pushing image, with extra buildctl args. It returns
// buildctl's output.
func buildFromGit(t *testing.T, bk *testenv.BuildKit, gitContext, image string, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	args := append([]string{"build",
		"--frontend", "dockerfile.v0",
		"--opt", "context=" + gitContext,
		"--opt", "platform=linux/amd64",
		"--progress", "plain",
		"--output", "type=image,name=" + image + ",push=true",
	}, extra...)
	var out bytes.Buffer
	cmd := bk.Command(ctx, nil, "buildctl-daemonless.sh", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("buildctl-daemonless.sh %s as %s took %s; last lines:\n%s", strings.Join(args, " "), bk.User,
		time.Since(start).Round(time.Millisecond), lastLines(strings.TrimRight(out.String(), "\n"), 20))
	return out.String(), err
}

// checkBuiltImage reads image back: linux/amd64, and its last layer is the RUN step's /built.
func checkBuiltImage(t *testing.T, image string) {
	t.Helper()
	ref, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("reading %s: %v", image, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.OS + "/" + cf.Architecture; got != "linux/amd64" {
		t.Errorf("config platform: got %s, want linux/amd64", got)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) < 2 {
		t.Fatalf("got %d layers, want the base layer plus the RUN layer", len(layers))
	}
	got, err := fileInLayer(layers[len(layers)-1], "built")
	if err != nil {
		t.Fatalf("RUN layer: %v", err)
	}
	if got != "built\n" {
		t.Errorf("/built: got %q, want %q", got, "built\n")
	}
}

// buildUserFile writes data to bk.Home/NAME, mode 0600, owned by the build user, who runs
// buildctl and so reads the key file, and returns its path.
func buildUserFile(t *testing.T, bk *testenv.BuildKit, name string, data []byte) string {
	t.Helper()
	u, err := user.Lookup(bk.User)
	if err != nil {
		t.Fatalf("looking up build user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	p := filepath.Join(bk.Home, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatalf("handing %s to %s: %v", p, bk.User, err)
	}
	return p
}

// otherKey is a new ed25519 private key, OpenSSH format, that the server does not know.
func otherKey(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "id_other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// buildctlError is the error buildctl printed last: the last line starting with "error:"
// and the lines after it, which hold the rest of a multi-line message (git's stderr).
func buildctlError(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "error:") {
			return strings.Join(lines[i:], "\n")
		}
	}
	return ""
}
