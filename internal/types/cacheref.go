package types

import (
	"strings"
)

// DefaultCacheRef is where a pipeline's registry build cache is stored unless it names
// another place: one tag per platform in the staging repository, so that whoever may push
// the arch tags may push the cache too.
const DefaultCacheRef CacheRef = "{staging}:buildcache-{os}-{arch}{variant}"

// CacheRef is a pattern naming the image reference of one platform's build cache, with
// the placeholders {staging} (the staging repository), {os}, {arch} and {variant}. It has
// no {revision}: every revision of a platform shares its cache.
type CacheRef string

// Render gives the cache reference of platform p of a pipeline staging to staging.
func (c CacheRef) Render(staging Repository, p Platform) string {
	return strings.NewReplacer(
		"{staging}", string(staging), "{os}", p.OS, "{arch}", p.Architecture, "{variant}", p.Variant,
	).Replace(string(c))
}

// Validate checks the pattern uses only known placeholders and gives, for every platform
// in ps, a distinct repository:tag reference.
func (c CacheRef) Validate(staging Repository, ps []Platform) error {
	s := string(c)
	for _, m := range placeholder.FindAllString(s, -1) {
		switch m {
		case "{staging}", "{os}", "{arch}", "{variant}":
		default:
			return breaks(ErrInvalidCacheRef, "cache ref %q: unknown placeholder %s (known: {staging} {os} {arch} {variant}; the cache is shared by all revisions)", s, m)
		}
	}
	seen := map[string]Platform{}
	for _, p := range ps {
		ref := c.Render(staging, p)
		repo, tag, ok := cutTag(ref)
		if !ok || !tagRE.MatchString(tag) {
			return breaks(ErrInvalidCacheRef, "cache ref %q gives %q for %s, which has no valid tag (want repository:tag)", s, ref, p)
		}
		if _, err := ParseRepository(repo); err != nil {
			return breaks(ErrInvalidCacheRef, "cache ref %q gives %q for %s: %v", s, ref, p, err)
		}
		if q, dup := seen[ref]; dup {
			return breaks(ErrInvalidCacheRef, "cache ref %q gives the same reference for %s and %s; add {os}, {arch} or {variant}", s, q, p)
		}
		seen[ref] = p
	}
	return nil
}

// TagIn reports whether tag, pushed to staging, holds the build cache of one of ps. Such a
// tag is never an arch tag, although with the default patterns it looks like one
// ("buildcache-linux-amd64" fits "{revision}-{arch}").
func (c CacheRef) TagIn(staging Repository, tag string, ps []Platform) bool {
	if c == "" {
		return false
	}
	ref := staging.Tag(tag)
	for _, p := range ps {
		if c.Render(staging, p) == ref {
			return true
		}
	}
	return false
}

// cutTag splits "repo:tag" at the tag's colon (not a registry port's).
func cutTag(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "", false
	}
	return ref[:i], ref[i+1:], true
}
