package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The rootless BuildKit image's user and layout, as moby/buildkit:rootless has them
// (BuildKit's Dockerfile, stage "rootless") and as the default build Job template
// (internal/builders/job.yaml.tmpl) expects them: uid 1000 named "user", BuildKit's state
// in an emptyDir at ~/.local/share/buildkit, push credentials at ~/.docker.
const (
	RootlessUID  = 1000
	RootlessHome = "/home/user"
	// RootlessRuntimeDir is XDG_RUNTIME_DIR, where buildkitd's socket and rootlesskit's
	// state live: mode 0700, owned by RootlessUID.
	RootlessRuntimeDir = "/run/user/1000"
	// RootlessTmpDir is TMPDIR.
	RootlessTmpDir = RootlessHome + "/.local/tmp"
	// RootlessBuildKitConfig is the buildkitd.toml buildkitd reads ($HOME/.config).
	RootlessBuildKitConfig = RootlessHome + "/.config/buildkit/buildkitd.toml"
)

// rootlessEnv is the image's environment: moby/buildkit:rootless's, with Alpine's default
// PATH written out.
var rootlessEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=" + RootlessHome,
	"USER=user",
	"XDG_RUNTIME_DIR=" + RootlessRuntimeDir,
	"TMPDIR=" + RootlessTmpDir,
	"BUILDKIT_HOST=unix://" + RootlessRuntimeDir + "/buildkit/buildkitd.sock",
}

// RootlessBuildKitImage returns a linux/amd64 image that runs BuildKit the way
// moby/buildkit:rootless does, assembled without Docker from what this machine has:
//   - buildkitd, buildctl and buildctl-daemonless.sh from BuildKitDir (hack/buildkit.sh);
//   - Debian's rootlesskit, runc, newuidmap, newgidmap and git (with git-remote-http for
//     http(s) contexts), each with the shared libraries ldd lists and the dynamic loader;
//   - Debian's busybox-static as /bin/sh and every applet buildctl-daemonless.sh uses;
//   - user 1000 ("user", HOME /home/user) in /etc/passwd and /etc/group, with the range
//     100000:65536 in /etc/subuid and /etc/subgid; XDG_RUNTIME_DIR /run/user/1000 (0700)
//     and TMPDIR ~/.local/tmp owned by it; /tmp world-writable (buildctl-daemonless.sh
//     makes its directory there whatever TMPDIR says).
//
// newuidmap and newgidmap carry file capabilities (cap_setuid+ep, cap_setgid+ep, as the
// security.capability xattr in the layer's tar headers) and mode 0755, not the setuid bit:
// Debian's shadow, run setuid, writes uid_map as euid 0, which the kernel refuses in a pod
// ("newuidmap: write to uid_map failed: Operation not permitted").
//
// The config is moby/buildkit:rootless's: USER 1000:1000, its ENV (HOME, USER,
// XDG_RUNTIME_DIR, TMPDIR, BUILDKIT_HOST, PATH), VOLUME ~/.local/share/buildkit and
// ENTRYPOINT ["rootlesskit", "buildkitd"]. The build Job replaces the entrypoint with
// buildctl-daemonless.sh, which starts `rootlesskit buildkitd $BUILDKITD_FLAGS` itself.
//
// Each of httpRegistries ("HOST:PORT") is reached over plain HTTP: it gets a
// `[registry."HOST:PORT"] http = true` section in the image's buildkitd.toml
// (RootlessBuildKitConfig). Without any the file is left out.
//
// A missing binary or library fails the test in CI and skips it elsewhere.
func RootlessBuildKitImage(t testing.TB, httpRegistries ...string) v1.Image {
	t.Helper()
	img, err := rootlessBuildKitImage(httpRegistries)
	if err != nil {
		Require(t, "rootless BuildKit image: %v (run `bash hack/buildkit.sh`)", err)
	}
	return img
}

func rootlessBuildKitImage(httpRegistries []string) (v1.Image, error) {
	fs := newRootFS()
	fs.layout(httpRegistries)
	dynamic, err := fs.programs()
	if err != nil {
		return nil, err
	}
	if err := fs.libraries(dynamic); err != nil {
		return nil, err
	}
	if err := fs.busybox(); err != nil {
		return nil, err
	}
	if fs.err != nil {
		return nil, fs.err
	}
	layerTar, err := fs.close()
	if err != nil {
		return nil, err
	}
	return rootlessImage(layerTar)
}

// layout writes the image's directories, its users and the BuildKit config that reaches
// httpRegistries over plain HTTP.
func (fs *rootFS) layout(httpRegistries []string) {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "root", "run", "run/user", "usr/share/git-core/templates"} {
		mode := int64(0o755)
		if d == "root" {
			mode = 0o700
		}
		fs.dir(d, mode, 0)
	}
	fs.dir("tmp", 0o1777, 0)
	for _, d := range []string{RootlessHome, RootlessHome + "/.local", RootlessHome + "/.local/share",
		RootlessHome + "/.local/share/buildkit", RootlessTmpDir, RootlessHome + "/.config", RootlessHome + "/.config/buildkit"} {
		fs.dir(d, 0o755, RootlessUID)
	}
	fs.dir(RootlessRuntimeDir, 0o700, RootlessUID)

	fs.bytes("etc/passwd", 0o644, 0, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:"+RootlessHome+":/bin/sh\n")
	fs.bytes("etc/group", 0o644, 0, "root:x:0:\nuser:x:1000:\n")
	fs.bytes("etc/subuid", 0o644, 0, "user:100000:65536\n")
	fs.bytes("etc/subgid", 0o644, 0, "user:100000:65536\n")
	fs.bytes("etc/nsswitch.conf", 0o644, 0, "passwd: files\ngroup: files\nhosts: files dns\n")
	if len(httpRegistries) > 0 {
		var toml strings.Builder
		for _, h := range httpRegistries {
			fmt.Fprintf(&toml, "[registry.%q]\n  http = true\n", h)
		}
		fs.bytes(RootlessBuildKitConfig, 0o644, RootlessUID, toml.String())
	}
	// Trust for https registries and git servers, when this machine has a CA bundle.
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		fs.file("etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644, nil)
	}

}

// programs copies BuildKit's binaries, the host's rootlesskit, runc, git (with its exec
// path) and uid mappers (with their file capabilities) into fs, and returns the host
// paths of those that link shared libraries.
func (fs *rootFS) programs() (dynamic []string, err error) {
	bk := BuildKitDir()
	for _, name := range []string{"buildkitd", "buildctl", "buildctl-daemonless.sh"} {
		fs.file("usr/bin/"+name, filepath.Join(bk, name), 0o755, nil)
	}
	for _, b := range []struct {
		name string
		caps uint32 // file capabilities: a bit per capability (CAP_SETUID...)
	}{
		{"rootlesskit", 0}, {"runc", 0}, {"git", 0},
		{"newuidmap", 1 << capSetUID}, {"newgidmap", 1 << capSetGID},
	} {
		host, err := exec.LookPath(b.name)
		if err != nil {
			return nil, fmt.Errorf("%s not on PATH", b.name)
		}
		var xattrs map[string]string
		if b.caps != 0 {
			xattrs = map[string]string{"security.capability": string(fileCapability(b.caps))}
		}
		fs.file("usr/bin/"+b.name, host, 0o755, xattrs)
		dynamic = append(dynamic, host)
	}
	helpers, err := gitExecPath(fs)
	if err != nil {
		return nil, err
	}
	return append(dynamic, helpers...), nil
}

// libraries copies the shared libraries the binaries dynamic link into fs.
func (fs *rootFS) libraries(dynamic []string) error {
	libs := map[string]bool{}
	for _, bin := range dynamic {
		l, err := sharedLibraries(bin)
		if err != nil {
			return err
		}
		for _, p := range l {
			libs[p] = true
		}
	}
	for _, p := range sortedKeys(libs) {
		fs.file(strings.TrimPrefix(p, "/"), p, 0o755, nil)
	}

	return nil
}

// busybox copies the host's busybox into fs as /bin/busybox with a link per applet.
func (fs *rootFS) busybox() error {
	fs.file("bin/busybox", BusyboxPath, 0o755, nil)
	applets, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	for _, a := range strings.Fields(string(applets)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			fs.symlink("bin/"+a, "busybox")
		}
	}
	return nil
}

// rootlessImage is the one-layer linux/amd64 image of layerTar, configured as
// moby/buildkit's rootless image is.
func rootlessImage(layerTar []byte) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "promoter testenv: rootless BuildKit " + BuildKitVersion, Created: v1.Time{Time: time.Unix(0, 0).UTC()}},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	setPlatform(cf, "linux/amd64")
	cf.Config.User = fmt.Sprintf("%d:%d", RootlessUID, RootlessUID)
	cf.Config.Env = append([]string(nil), rootlessEnv...)
	cf.Config.Volumes = map[string]struct{}{RootlessHome + "/.local/share/buildkit": {}}
	cf.Config.Entrypoint = []string{"rootlesskit", "buildkitd"}
	return mutate.ConfigFile(img, cf)
}

// gitHelpers are the programs of git's exec path the image keeps besides git itself:
// git-remote-http fetches http(s) URLs, and `git submodule`, which BuildKit runs after
// every fetch, is a shell script that runs git-sh-i18n--envsubst. The others (git daemon,
// http-backend, imap-send, scalar, ...) serve no build.
var gitHelpers = map[string]bool{"git-remote-http": true, "git-sh-i18n--envsubst": true}

// gitExecPath copies git's exec path (`git --exec-path`, /usr/lib/git-core on Debian)
// into fs as git finds it there: its links, git itself (as a link to /usr/bin/git), the
// shell scripts and libraries, and gitHelpers, but no Perl script (the image has no
// Perl). It returns the host paths of the binaries it copied, whose libraries the image
// needs too.
func gitExecPath(fs *rootFS) (binaries []string, err error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("git --exec-path: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return nil, err
	}
	gitInfo, err := os.Stat(gitBin)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		host, name := filepath.Join(dir, e.Name()), strings.TrimPrefix(filepath.Join(dir, e.Name()), "/")
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return nil, err
			}
			fs.symlink(name, target)
		case !e.Type().IsRegular():
		case e.Name() == "git":
			if fi, err := os.Stat(host); err != nil || fi.Size() != gitInfo.Size() {
				return nil, fmt.Errorf("%s is not %s", host, gitBin)
			}
			fs.symlink(name, "/usr/bin/git")
		case gitHelpers[e.Name()]:
			fs.file(name, host, 0o755, nil)
			binaries = append(binaries, host)
		default:
			head := make([]byte, 64)
			f, err := os.Open(host)
			if err != nil {
				return nil, err
			}
			n, _ := io.ReadFull(f, head)
			f.Close()
			head = head[:n]
			if bytes.HasPrefix(head, []byte("\x7fELF")) || bytes.HasPrefix(head, []byte("#!/usr/bin/perl")) {
				continue
			}
			fs.file(name, host, 0o755, nil)
		}
	}
	return binaries, nil
}

// Capabilities newuidmap and newgidmap need (linux/capability.h).
const (
	capSetGID = 6
	capSetUID = 7
)

// fileCapability is the security.capability xattr value `setcap CAPS+ep` writes for the
// capabilities in mask (all below 32): struct vfs_cap_data revision 2, little-endian:
// magic_etc (VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE), then permitted and inheritable
// of the low and high 32 capabilities.
func fileCapability(mask uint32) []byte {
	const (
		vfsCapRevision2      = 0x02000000
		vfsCapFlagsEffective = 0x000001
	)
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], vfsCapRevision2|vfsCapFlagsEffective)
	binary.LittleEndian.PutUint32(b[4:], mask) // permitted, low word
	return b                                   // inheritable and the high words stay 0
}

// sharedLibraries lists the files ldd says bin loads, the dynamic loader included, as the
// absolute paths the loader looks for; none for a static binary.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v\n%s", bin, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // the loader: /lib64/ld-linux-x86-64.so.2
		case len(f) >= 3 && f[1] == "=>" && f[2] == "not":
			return nil, fmt.Errorf("ldd %s: %s", bin, strings.TrimSpace(line))
		}
	}
	return libs, nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rootFS writes a layer's tar: each entry once, parents before children (missing parents
// become root's 0755 directories), owners numeric, times zero. The first error sticks.
type rootFS struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	seen map[string]bool
	err  error
}

func newRootFS() *rootFS {
	fs := &rootFS{seen: map[string]bool{}}
	fs.tw = tar.NewWriter(&fs.buf)
	return fs
}

func (fs *rootFS) write(h *tar.Header, body []byte) {
	if fs.err != nil {
		return
	}
	name := strings.Trim(path.Clean("/"+h.Name), "/")
	if fs.seen[name] {
		return
	}
	if parent := path.Dir(name); parent != "." && !fs.seen[parent] {
		fs.dir(parent, 0o755, 0)
	}
	fs.seen[name] = true
	h.Name = name
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	h.ModTime = time.Unix(0, 0)
	if len(h.PAXRecords) > 0 {
		h.Format = tar.FormatPAX
	}
	if err := fs.tw.WriteHeader(h); err != nil {
		fs.err = fmt.Errorf("writing %s: %w", name, err)
		return
	}
	if _, err := fs.tw.Write(body); err != nil {
		fs.err = fmt.Errorf("writing %s: %w", name, err)
	}
}

func (fs *rootFS) dir(name string, mode int64, uid int) {
	fs.write(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid}, nil)
}

func (fs *rootFS) bytes(name string, mode int64, uid int, content string) {
	fs.write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: uid, Size: int64(len(content))}, []byte(content))
}

// file copies host (following symlinks) to name, owned by root, with xattrs (name →
// value) as SCHILY.xattr PAX records.
func (fs *rootFS) file(name, host string, mode int64, xattrs map[string]string) {
	if fs.err != nil {
		return
	}
	b, err := os.ReadFile(host)
	if err != nil {
		fs.err = err
		return
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b))}
	for k, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
	fs.write(h, b)
}

func (fs *rootFS) symlink(name, target string) {
	fs.write(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

func (fs *rootFS) close() ([]byte, error) {
	if fs.err != nil {
		return nil, fs.err
	}
	if err := fs.tw.Close(); err != nil {
		return nil, err
	}
	return fs.buf.Bytes(), nil
}
