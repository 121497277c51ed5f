package dev

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/promoter-dev/promoter/examples"
)

// TestWriteExample: the embedded example is written under the data dir whole, and a second
// start replaces what the first wrote (an edit or a leftover file does not survive), so
// the tree built is always the binary's.
func TestWriteExample(t *testing.T) {
	want := map[string]string{}
	if err := fs.WalkDir(examples.Hello(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(examples.Hello(), path)
		want[path] = string(b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := want["Dockerfile"]; !ok {
		t.Fatalf("the embedded example has no Dockerfile: %v", want)
	}
	dataDir := t.TempDir()
	for run := range 2 {
		dir, err := writeExample(dataDir)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if dir != filepath.Join(dataDir, "examples", "hello") {
			t.Fatalf("run %d: wrote to %s, want %s", run, dir, filepath.Join(dataDir, ExampleDir))
		}
		got := map[string]string{}
		if err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			b, err := os.ReadFile(path)
			got[filepath.ToSlash(rel)] = string(b)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("run %d: written tree (-embedded +written):\n%s", run, diff)
		}
		// What the next start must undo.
		if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("edited"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "leftover"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunRefusesASourceThatIsNotADirectory: --source is checked before anything starts.
func TestRunRefusesASourceThatIsNotADirectory(t *testing.T) {
	err := Run(t.Context(), WithSource(filepath.Join(t.TempDir(), "missing")), WithDataDir(t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "is not a directory: pass a directory to --source") {
		t.Fatalf("got %v, want an error saying the source is not a directory", err)
	}
}
