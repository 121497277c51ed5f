package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestREADMEReferenceMatchesConfig checks the README's configuration reference against the
// Config struct both ways: every documented key exists, and every key is documented.
func TestREADMEReferenceMatchesConfig(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "<!-- config-reference:start -->")
	end := strings.Index(s, "<!-- config-reference:end -->")
	if start < 0 || end < start {
		t.Fatal("README.md has no config-reference markers")
	}
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(s[start:end], -1) {
		documented = append(documented, m[1])
	}
	if diff := cmp.Diff(AllKeys(), sortedCopy(documented)); diff != "" {
		t.Errorf("README configuration reference vs Config struct (-struct +README):\n%s", diff)
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
