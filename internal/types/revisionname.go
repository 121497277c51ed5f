package types

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MaxRevisionLen is the longest revision: a SHA-256 commit id (64) with room to spare, and
// short enough that "{revision}-{os}-{arch}{variant}" stays within a tag's 128 characters.
const MaxRevisionLen = 101

// ErrInvalidRevision is wrapped by ValidateRevision's errors.
var ErrInvalidRevision = errors.New("invalid revision")

// revisionRE keeps a revision usable inside a tag ({revision} in arch tags) and as the
// tail of a KV key.
var revisionRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// ValidateRevision is the one rule for revision names from every source (git webhooks,
// registry notifications, the CLI): 1 to MaxRevisionLen ASCII letters, digits, '.', '_'
// or '-', not starting with '.' or '-', and no empty dot-separated part ("a..b", "a."),
// which a KV key cannot hold.
func ValidateRevision(rev string) error {
	switch {
	case rev == "":
		return fmt.Errorf("%w: empty", ErrInvalidRevision)
	case len(rev) > MaxRevisionLen:
		return fmt.Errorf("%w: %d characters, at most %d", ErrInvalidRevision, len(rev), MaxRevisionLen)
	case !revisionRE.MatchString(rev):
		return fmt.Errorf("%w %q: only letters, digits, '.', '_' and '-', not starting with '.' or '-'", ErrInvalidRevision, rev)
	case strings.Contains(rev, "..") || strings.HasSuffix(rev, "."):
		return fmt.Errorf("%w %q: a '.' must be followed by another character", ErrInvalidRevision, rev)
	}
	return nil
}
