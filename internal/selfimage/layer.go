package selfimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// UID and GID are the image's user, nonroot, as in distroless and as the chart's
	// securityContext runs it (runAsUser/runAsGroup 65532).
	UID = 65532
	GID = 65532
	// BinaryPath is where the binary sits in the image; it is the entrypoint.
	BinaryPath = "/usr/local/bin/promoter"
	// HomeDir is nonroot's home and the image's working directory.
	HomeDir = "/home/nonroot"
	// DefaultCABundle is the build machine's CA bundle (Debian, Ubuntu, Alpine) copied into
	// the image at the same path, where Go's crypto/x509 looks first on Linux.
	DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"
)

const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
	// nsswitch makes Go's resolver read /etc/hosts before DNS, as glibc would.
	nsswitch = "hosts: files dns\n"
)

// entry is one file or directory of a layer.
type entry struct {
	name     string // without leading slash; a directory ends in /
	mode     int64
	uid, gid int
	data     []byte // files only; nil with src set
	src      string // a file on disk to copy instead of data
}

// baseEntries are the base layer: what scratch lacks for a Go binary that talks TLS, as a
// non-root user, with a writable /tmp and home.
func baseEntries(caBundle []byte) []entry {
	return []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte(nsswitch)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caBundle},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: UID, gid: GID},
		{name: "tmp/", mode: 0o1777},
	}
}

// binaryEntries are the binary's layer.
func binaryEntries(bin string) []entry {
	return []entry{
		{name: "usr/", mode: 0o755},
		{name: "usr/local/", mode: 0o755},
		{name: "usr/local/bin/", mode: 0o755},
		{name: BinaryPath[1:], mode: 0o755, src: bin},
	}
}

// writeTar writes entries, in the order given, with every time set to mtime and no user
// or group names: the same entries give the same bytes.
func writeTar(w io.Writer, entries []entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
		}
		var body io.Reader
		switch {
		case e.name[len(e.name)-1] == '/':
			h.Typeflag = tar.TypeDir
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			h.Typeflag, h.Size, body = tar.TypeReg, st.Size(), f
		default:
			h.Typeflag, h.Size, body = tar.TypeReg, int64(len(e.data)), bytes.NewReader(e.data)
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("writing %s: %w", path.Clean("/"+e.name), err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				return fmt.Errorf("writing %s: %w", path.Clean("/"+e.name), err)
			}
		}
	}
	return tw.Close()
}

// layer writes entries as a tar file at file and returns it as an OCI gzip layer. The
// compressed bytes are kept once computed, so the digest and the upload agree and the
// binary is compressed once.
func layer(file string, entries []entry, mtime time.Time) (v1.Layer, error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := writeTar(f, entries, mtime); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing layer %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromFile(file,
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching)
	return plainLayer{l}, err
}

// plainLayer hides the tarball layer's Descriptor method, whose empty (non-nil) annotations
// map would make the in-memory manifest differ from the JSON one (validate.Image fails).
type plainLayer struct{ v1.Layer }
