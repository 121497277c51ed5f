package builders

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// sourceTar writes the tree under dir as a tar with every entry under prefix (an absolute
// path such as /src), deterministically: entries in lexical order, owner 0:0, no user or
// group names, modification times at Epoch, permission bits kept, .git left out (its
// contents change with every fetch without changing the source). Regular files,
// directories and symlinks are kept; other file types are refused.
func sourceTar(dir, prefix string) ([]byte, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("build.dir: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("build.dir %s is not a directory", dir)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	prefix = strings.Trim(prefix, "/")
	// The parents of prefix, so that extraction needs no implicit directories.
	parts := strings.Split(prefix, "/")
	for i := range parts {
		if err := tw.WriteHeader(dirHeader(strings.Join(parts[:i+1], "/"), 0o755)); err != nil {
			return nil, err
		}
	}
	// WalkDir visits entries in lexical order, which makes the archive deterministic.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := int64(info.Mode().Perm())
		switch {
		case d.IsDir():
			return tw.WriteHeader(dirHeader(name, perm))
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target,
				Mode: 0o777, ModTime: Epoch, Format: tar.FormatPAX})
		case info.Mode().IsRegular():
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: info.Size(),
				Mode: perm, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		default:
			return fmt.Errorf("%s is a %s; only files, directories and symlinks can be built", p, info.Mode().Type())
		}
	})
	if err != nil {
		return nil, fmt.Errorf("archiving build.dir %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func dirHeader(name string, perm int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: perm, ModTime: Epoch, Format: tar.FormatPAX}
}
