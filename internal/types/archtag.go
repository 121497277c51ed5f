package types

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// DefaultArchTag is the arch-tag pattern used when a pipeline names none.
const DefaultArchTag = "{revision}-{arch}"

// ArchTag is a pattern that names the tag a per-platform image of a revision is pushed
// under, with the placeholders {revision}, {os}, {arch} and {variant}.
type ArchTag string

var placeholder = regexp.MustCompile(`\{[a-z]+\}`)

// tagRE is the OCI distribution tag grammar.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// Validate checks the pattern uses {revision} once and only known placeholders, and that
// it gives a distinct, valid tag for every platform in ps.
func (a ArchTag) Validate(ps []Platform) error {
	s := string(a)
	if strings.Count(s, "{revision}") != 1 {
		return fmt.Errorf("arch tag %q must contain {revision} exactly once", s)
	}
	for _, m := range placeholder.FindAllString(s, -1) {
		switch m {
		case "{revision}", "{os}", "{arch}", "{variant}":
		default:
			return fmt.Errorf("arch tag %q: unknown placeholder %s (known: {revision} {os} {arch} {variant})", s, m)
		}
	}
	seen := map[string]Platform{}
	for _, p := range ps {
		tag := a.Render("0123abc", p)
		if !tagRE.MatchString(tag) {
			return fmt.Errorf("arch tag %q gives %q for %s, which is not a valid tag", s, tag, p)
		}
		if q, dup := seen[tag]; dup {
			return fmt.Errorf("arch tag %q gives the same tag for %s and %s; add {variant}", s, q, p)
		}
		seen[tag] = p
	}
	return nil
}

// Render gives the tag of revision rev for platform p.
func (a ArchTag) Render(rev string, p Platform) string {
	return strings.NewReplacer(
		"{revision}", rev, "{os}", p.OS, "{arch}", p.Architecture, "{variant}", p.Variant,
	).Replace(string(a))
}

// Tags gives the arch tag of revision rev for each of ps, keyed by Platform.String().
func (a ArchTag) Tags(rev string, ps []Platform) map[string]string {
	tags := make(map[string]string, len(ps))
	for _, p := range ps {
		tags[p.String()] = a.Render(rev, p)
	}
	return tags
}

// Match finds which of ps the tag was rendered for, and the revision in it.
func (a ArchTag) Match(tag string, ps []Platform) (rev string, p Platform, ok bool) {
	for _, p := range ps {
		re := a.regexp(p)
		if m := re.FindStringSubmatch(tag); m != nil {
			return m[1], p, true
		}
	}
	return "", Platform{}, false
}

// archTagRegexps caches compiled patterns: Match runs for every webhook event and
// compiling dominated the receiver's profile.
var archTagRegexps sync.Map // string → *regexp.Regexp

func (a ArchTag) regexp(p Platform) *regexp.Regexp {
	key := string(a) + "\x00" + p.String()
	if re, ok := archTagRegexps.Load(key); ok {
		return re.(*regexp.Regexp)
	}
	re := a.compile(p)
	archTagRegexps.Store(key, re)
	return re
}

func (a ArchTag) compile(p Platform) *regexp.Regexp {
	parts := strings.Split(string(a), "{revision}")
	for i, part := range parts {
		fixed := strings.NewReplacer("{os}", p.OS, "{arch}", p.Architecture, "{variant}", p.Variant).Replace(part)
		parts[i] = regexp.QuoteMeta(fixed)
	}
	return regexp.MustCompile("^" + strings.Join(parts, `([A-Za-z0-9_][A-Za-z0-9._-]*)`) + "$")
}
