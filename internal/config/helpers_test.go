package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes yaml to a configuration file of the test's own and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// loadYAML loads yaml as the configuration file.
func loadYAML(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	return Load(Input{File: writeConfig(t, yaml)})
}

// validationProblems are the problems of err, which must be a *ValidationError.
func validationProblems(t *testing.T, err error) []Problem {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want a *ValidationError (ErrInvalid)", err)
	}
	return verr.Problems
}

// wantProblems checks that err, a *ValidationError, has a problem at each path of want
// whose message contains want's text, and no other. It returns the messages by path.
func wantProblems(t *testing.T, err error, want map[string]string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, p := range validationProblems(t, err) {
		got[p.Path] = p.Msg
	}
	if len(got) != len(want) {
		t.Errorf("got problems %v, want %d", err, len(want))
	}
	for path, msg := range want {
		if !strings.Contains(got[path], msg) {
			t.Errorf("problem at %s: got %q, want it to contain %q", path, got[path], msg)
		}
	}
	return got
}
