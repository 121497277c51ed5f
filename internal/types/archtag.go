package types

import (
	"regexp"
	"strings"
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
		return breaks(ErrInvalidArchTag, "arch tag %q must contain {revision} exactly once", s)
	}
	for _, m := range placeholder.FindAllString(s, -1) {
		switch m {
		case "{revision}", "{os}", "{arch}", "{variant}":
		default:
			return breaks(ErrInvalidArchTag, "arch tag %q: unknown placeholder %s (known: {revision} {os} {arch} {variant})", s, m)
		}
	}
	seen := map[string]Platform{}
	for _, p := range ps {
		tag := a.Render("0123abc", p)
		if !tagRE.MatchString(tag) {
			return breaks(ErrInvalidArchTag, "arch tag %q gives %q for %s, which is not a valid tag", s, tag, p)
		}
		if q, dup := seen[tag]; dup {
			return breaks(ErrInvalidArchTag, "arch tag %q gives the same tag for %s and %s; add {variant}", s, q, p)
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

// ArchTagMatcher finds which platform, and which revision, an arch tag was rendered for.
// Compile it once per pipeline: matching runs for every registry event.
type ArchTagMatcher struct {
	platforms []Platform
	res       []*regexp.Regexp
}

// Compile gives the matcher of a's tags for the platforms ps.
func (a ArchTag) Compile(ps []Platform) ArchTagMatcher {
	m := ArchTagMatcher{platforms: ps, res: make([]*regexp.Regexp, len(ps))}
	for i, p := range ps {
		m.res[i] = a.compile(p)
	}
	return m
}

// Match finds which platform tag was rendered for, and the revision in it.
func (m ArchTagMatcher) Match(tag string) (rev string, p Platform, ok bool) {
	for i, re := range m.res {
		if sub := re.FindStringSubmatch(tag); sub != nil {
			return sub[1], m.platforms[i], true
		}
	}
	return "", Platform{}, false
}

func (a ArchTag) compile(p Platform) *regexp.Regexp {
	parts := strings.Split(string(a), "{revision}")
	for i, part := range parts {
		fixed := strings.NewReplacer("{os}", p.OS, "{arch}", p.Architecture, "{variant}", p.Variant).Replace(part)
		parts[i] = regexp.QuoteMeta(fixed)
	}
	return regexp.MustCompile("^" + strings.Join(parts, `([A-Za-z0-9_][A-Za-z0-9._-]*)`) + "$")
}
