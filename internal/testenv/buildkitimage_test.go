package testenv

import (
	"archive/tar"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// TestFileCapability checks the security.capability value against what setcap writes.
func TestFileCapability(t *testing.T) {
	tests := []struct {
		name string
		mask uint32
		want string
	}{
		{"cap_setuid+ep", 1 << capSetUID, "0100000280000000000000000000000000000000"},
		{"cap_setgid+ep", 1 << capSetGID, "0100000240000000000000000000000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hexString(fileCapability(tt.mask)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

// TestRootlessBuildKitImage checks the image's config and the entries the build Job
// relies on, then unpacks it and runs each of its programs as user 1000 in a chroot: a
// library ldd missed, or a wrong loader path, fails here rather than in a pod.
func TestRootlessBuildKitImage(t *testing.T) {
	img := RootlessBuildKitImage(t, "10.0.0.1:5000")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Platform().String(); got != "linux/amd64" {
		t.Errorf("platform: got %s, want linux/amd64", got)
	}
	wantConfig := v1.Config{
		User:       "1000:1000",
		Env:        rootlessEnv,
		Entrypoint: []string{"rootlesskit", "buildkitd"},
		Volumes:    map[string]struct{}{"/home/user/.local/share/buildkit": {}},
	}
	if diff := cmp.Diff(wantConfig, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	if m, err := img.Manifest(); err == nil {
		t.Logf("one layer of %d bytes (gzip), %d entries", m.Layers[0].Size, len(layerEntries(t, img)))
	}
	entries := layerEntries(t, img)
	type entry struct {
		Type     byte
		Mode     int64
		UID      int
		Linkname string
		Caps     string
	}
	tests := []struct {
		path string
		want entry
	}{
		{"usr/bin/newuidmap", entry{tar.TypeReg, 0o755, 0, "", "0100000280000000000000000000000000000000"}},
		{"usr/bin/newgidmap", entry{tar.TypeReg, 0o755, 0, "", "0100000240000000000000000000000000000000"}},
		{"usr/bin/buildctl-daemonless.sh", entry{tar.TypeReg, 0o755, 0, "", ""}},
		{"usr/bin/buildkitd", entry{tar.TypeReg, 0o755, 0, "", ""}},
		{"usr/bin/rootlesskit", entry{tar.TypeReg, 0o755, 0, "", ""}},
		{"usr/bin/runc", entry{tar.TypeReg, 0o755, 0, "", ""}},
		{"lib64/ld-linux-x86-64.so.2", entry{tar.TypeReg, 0o755, 0, "", ""}},
		{"bin/sh", entry{tar.TypeSymlink, 0o777, 0, "busybox", ""}},
		{"run/user/1000", entry{tar.TypeDir, 0o700, 1000, "", ""}},
		{"home/user/.local/share/buildkit", entry{tar.TypeDir, 0o755, 1000, "", ""}},
		{"home/user/.local/tmp", entry{tar.TypeDir, 0o755, 1000, "", ""}},
		{"tmp", entry{tar.TypeDir, 0o1777, 0, "", ""}},
		{"home/user/.config/buildkit/buildkitd.toml", entry{tar.TypeReg, 0o644, 1000, "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			h, ok := entries[tt.path]
			if !ok {
				t.Fatalf("no %s in the layer", tt.path)
			}
			got := entry{h.Typeflag, h.Mode, h.Uid, h.Linkname, hexString([]byte(h.PAXRecords["SCHILY.xattr.security.capability"]))}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.path, diff)
			}
		})
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/subuid": "user:100000:65536\n",
		"etc/subgid": "user:100000:65536\n",
		"home/user/.config/buildkit/buildkitd.toml": "[registry.\"10.0.0.1:5000\"]\n  http = true\n",
	}
	root := unpack(t, img)
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %q (%v), want %q", p, got, err, want)
		}
	}

	if os.Getuid() != 0 {
		Require(t, "running the image's programs needs chroot (root)")
	}
	// The container runtime gives every container a /dev; git opens /dev/null.
	if err := os.Mkdir(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "dev/null"), 0o666); err != nil {
		t.Fatal(err)
	}
	runs := []struct {
		name string
		args []string
		want string
	}{
		{"busybox applets of buildctl-daemonless.sh", []string{"/bin/sh", "-c",
			`d=$(mktemp -d /tmp/buildctl-daemonless.XXXXXX) && echo $(id -u) $(awk "BEGIN{print (100 + 2 * 20) * 0.001}") $(expr 1 + 1) && rm -rf $d`}, "1000 0.14 2"},
		{"buildkitd", []string{"buildkitd", "--version"}, "buildkitd github.com/moby/buildkit"},
		{"buildctl", []string{"buildctl", "--version"}, "buildctl github.com/moby/buildkit"},
		{"rootlesskit", []string{"rootlesskit", "--version"}, "rootlesskit version"},
		{"runc", []string{"runc", "--version"}, "runc version"},
		{"git", []string{"git", "--version"}, "git version"},
		// Loaded with its libraries, it complains about its arguments.
		{"git-remote-http", []string{"git", "remote-http"}, "remote-curl: usage"},
		// BuildKit runs it after every fetch; it is a shell script of git's.
		{"git submodule", []string{"/bin/sh", "-c", "cd /tmp && git init -q r && cd r && git submodule update --init --recursive && echo submodules updated"}, "submodules updated"},
		{"newuidmap", []string{"newuidmap"}, "usage: newuidmap"},
		{"newgidmap", []string{"newgidmap"}, "usage: newgidmap"},
	}
	for _, tt := range runs {
		t.Run("run "+tt.name, func(t *testing.T) {
			// Not exec.Command: it would look the name up on this machine's PATH.
			cmd := &exec.Cmd{
				Path: lookInRoot(root, tt.args[0]), Args: tt.args, Env: rootlessEnv, Dir: "/",
				SysProcAttr: &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}},
			}
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("%s: got %q (%v), want it to contain %q", strings.Join(tt.args, " "), out, err, tt.want)
			}
		})
	}
}

// lookInRoot finds name on the image's PATH, as a path inside root.
func lookInRoot(root, name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	for _, d := range []string{"/usr/bin", "/bin"} {
		if _, err := os.Lstat(filepath.Join(root, d, name)); err == nil {
			return d + "/" + name
		}
	}
	return name
}

// layerEntries reads the image's single layer: path → header.
func layerEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	eachEntry(t, img, func(h *tar.Header, _ io.Reader) {
		out[strings.TrimSuffix(h.Name, "/")] = h
	})
	return out
}

func eachEntry(t *testing.T, img v1.Image, f func(*tar.Header, io.Reader)) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("got %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		f(h, tr)
	}
}

// unpack writes the image's layer to a new directory as containerd would: owners, modes
// and xattrs, after the chown.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	asRoot := os.Getuid() == 0
	eachEntry(t, img, func(h *tar.Header, r io.Reader) {
		p := filepath.Join(root, h.Name)
		var err error
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
				_, err = io.Copy(f, r)
				err = errors.Join(err, f.Close())
			}
		default:
			t.Fatalf("%s: unexpected entry type %c", h.Name, h.Typeflag)
		}
		if err == nil && asRoot {
			err = os.Lchown(p, h.Uid, h.Gid)
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && err == nil && asRoot {
				err = unix.Setxattr(p, x, []byte(v), 0)
			}
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			mode := os.FileMode(h.Mode & 0o777)
			if h.Mode&0o1000 != 0 {
				mode |= os.ModeSticky
			}
			err = os.Chmod(p, mode)
		}
		if err != nil {
			t.Fatalf("unpacking %s: %v", h.Name, err)
		}
	})
	// The chroot's programs must reach their files as user 1000.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}
