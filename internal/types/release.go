package types

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ReleaseTags are the patterns of a pipeline's git tags that are releases: a pushed tag
// that matches one is promoted, as a tag of its own, to every destination of the revision
// it names. Each pattern is a path.Match glob ("v*", "v[0-9]*.*"): '*' matches any run of
// characters except '/', '?' one character, '[...]' a class.
type ReleaseTags []string

// ErrInvalidTag is wrapped by ValidateTag's errors.
var ErrInvalidTag = errors.New("invalid tag")

// Validate checks every pattern's syntax; the error names each bad one.
func (rt ReleaseTags) Validate() error {
	var bad []string
	for i, p := range rt {
		if p == "" {
			bad = append(bad, fmt.Sprintf("pattern %d is empty", i))
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			bad = append(bad, fmt.Sprintf("pattern %q: %v", p, err))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s (each is a path.Match glob such as v*)", strings.Join(bad, "; "))
	}
	return nil
}

// Match reports whether git tag tag is a release: it matches one of the patterns.
func (rt ReleaseTags) Match(tag string) bool {
	for _, p := range rt {
		if ok, err := path.Match(p, tag); err == nil && ok {
			return true
		}
	}
	return false
}

// ValidateTag checks the OCI tag grammar: 1-128 letters, digits, '_', '.', '-', not
// starting with '.' or '-'. Which tags are reserved for signatures and attestations is
// registry's rule (registry.IsReservedTag).
func ValidateTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("%w %q: an image tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", ErrInvalidTag, tag)
	}
	return nil
}
