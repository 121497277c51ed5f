package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BuildKitVersion is the release hack/buildkit.sh builds.
const BuildKitVersion = "v0.34.2"

// BuildKitDir is where hack/buildkit.sh puts buildkitd, buildctl and buildctl-daemonless.sh:
// $PROMOTER_BUILDKIT (hack/test.sh sets it), else
// ${XDG_CACHE_HOME:-$HOME/.cache}/promoter/buildkit-<BuildKitVersion>.
func BuildKitDir() string {
	if d := os.Getenv("PROMOTER_BUILDKIT"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "promoter", "buildkit-"+BuildKitVersion)
}

// BuildUser is the unprivileged user rootless BuildKit runs as when the tests run as root:
// $PROMOTER_BUILD_USER, else "promoter-build" (hack/buildkit.sh creates it with subuid and
// subgid ranges).
func BuildUser() string {
	if u := os.Getenv("PROMOTER_BUILD_USER"); u != "" {
		return u
	}
	return "promoter-build"
}

// BuildKit runs rootless BuildKit the way the moby/buildkit rootless image does: as an
// unprivileged user, through buildctl-daemonless.sh, with BUILDKITD_FLAGS=
// --oci-worker-no-process-sandbox. Each BuildKit has its own HOME, XDG_RUNTIME_DIR and
// buildkitd.toml, so BuildKit's state and cache die with the test.
type BuildKit struct {
	// Dir holds buildkitd, buildctl and buildctl-daemonless.sh: Home/bin, linked (or copied)
	// from BuildKitDir, which the build user may not be able to reach (it is under root's
	// HOME when the tests run as root).
	Dir string
	// Home is the build user's HOME for this test; BuildKit's config is in
	// Home/.config/buildkit/buildkitd.toml and its state in Home/.local/share/buildkit.
	Home string
	// User is the user the commands run as.
	User string

	cred *syscall.Credential // nil when the tests already run unprivileged
}

// NewBuildKit prepares rootless BuildKit for one test. Each of httpRegistries ("HOST:PORT")
// is reached over plain HTTP. When a binary, a host tool (rootlesskit, newuidmap, runc, git)
// or the build user is missing the test fails in CI and is skipped elsewhere.
func NewBuildKit(t testing.TB, httpRegistries ...string) *BuildKit {
	t.Helper()
	dir := BuildKitDir()
	for _, name := range []string{"buildkitd", "buildctl", "buildctl-daemonless.sh"} {
		if !isExecutable(filepath.Join(dir, name)) {
			Require(t, "%s not found in %s (run `bash hack/buildkit.sh` to build it)", name, dir)
		}
	}
	for _, name := range []string{"rootlesskit", "newuidmap", "newgidmap", "runc", "git"} {
		if _, err := exec.LookPath(name); err != nil {
			Require(t, "%s not on PATH (run `bash hack/buildkit.sh` to install it)", name)
		}
	}

	b := &BuildKit{}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		// buildkitd refuses --oci-worker-no-process-sandbox as root, and the rootless image
		// never runs as root: switch to the build user.
		u, err := user.Lookup(BuildUser())
		if err != nil {
			Require(t, "build user %q: %v (run `bash hack/buildkit.sh` to create it)", BuildUser(), err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		b.User = u.Username
		b.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	} else if u, err := user.Current(); err == nil {
		b.User = u.Username
	}
	if err := hasSubIDs(b.User); err != nil {
		Require(t, "%v (run `bash hack/buildkit.sh` to add the ranges)", err)
	}

	// Not t.TempDir: its parent is mode 0700 and owned by us, so the build user could not
	// reach it.
	home, err := os.MkdirTemp("", "promoter-buildkit-")
	if err != nil {
		t.Fatalf("creating BuildKit home: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(home) })
	b.Home = home

	var toml strings.Builder
	for _, h := range httpRegistries {
		fmt.Fprintf(&toml, "[registry.%q]\n  http = true\n", h)
	}
	b.Dir = filepath.Join(home, "bin")
	if err := os.Mkdir(b.Dir, 0o755); err != nil {
		t.Fatalf("creating BuildKit home: %v", err)
	}
	for _, d := range []string{".config/buildkit", ".local/share", "run"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatalf("creating BuildKit home: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(home, ".config/buildkit/buildkitd.toml"), []byte(toml.String()), 0o600); err != nil {
		t.Fatalf("writing buildkitd.toml: %v", err)
	}
	for _, name := range []string{"buildkitd", "buildctl", "buildctl-daemonless.sh"} {
		if err := linkOrCopy(filepath.Join(dir, name), filepath.Join(b.Dir, name)); err != nil {
			t.Fatalf("installing %s for the build user: %v", name, err)
		}
	}
	// Everything but bin, whose files may be hard links to the cache: the build user only
	// needs to run them.
	if err := filepath.WalkDir(home, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == b.Dir {
			return filepath.SkipDir
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatalf("handing BuildKit home to %s: %v", b.User, err)
	}
	return b
}

// Env is the environment the build commands get: the build user's HOME, XDG_RUNTIME_DIR and
// XDG_CONFIG_HOME under b.Home, PATH with b.Dir first, and the rootless image's
// BUILDKITD_FLAGS.
func (b *BuildKit) Env() []string {
	return []string{
		"HOME=" + b.Home,
		"USER=" + b.User,
		"LOGNAME=" + b.User,
		"PATH=" + b.Dir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"XDG_RUNTIME_DIR=" + filepath.Join(b.Home, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(b.Home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(b.Home, ".local", "share"),
		"BUILDKITD_FLAGS=--oci-worker-no-process-sandbox",
		// The script gives buildkitd ~2 s to answer by default, too little on a busy CI
		// machine; 40 tries wait ~20 s.
		"BUILDCTL_CONNECT_RETRIES_MAX=40",
	}
}

// Command returns name (looked up in b.Dir first, then on PATH) with args, to run as the
// build user with Env plus extraEnv. The usual call is
// b.Command(ctx, nil, "buildctl-daemonless.sh", "build", ...).
func (b *BuildKit) Command(ctx context.Context, extraEnv []string, name string, args ...string) *exec.Cmd {
	path := name
	if !strings.Contains(name, "/") {
		if p := filepath.Join(b.Dir, name); isExecutable(p) {
			path = p
		}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(b.Env(), extraEnv...)
	cmd.Dir = b.Home
	// Its own process group, so a cancelled build takes buildkitd and rootlesskit with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// linkOrCopy hard-links src to dst, copying when they are on different filesystems.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// hasSubIDs checks that name has ranges in /etc/subuid and /etc/subgid, which newuidmap and
// newgidmap need to map the build's users.
func hasSubIDs(name string) error {
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading %s: %w", f, err)
		}
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, name+":") {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s has no range for %s", f, name)
		}
	}
	return nil
}
