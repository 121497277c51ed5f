package types

import (
	"fmt"
	"strings"
)

// Repository is "host[:port]/path" without tag or digest, as pipelines name staging and
// destination repositories.
type Repository string

// Host is the registry host part.
func (r Repository) Host() string {
	h, _, _ := strings.Cut(string(r), "/")
	return h
}

// OnHost reports whether r is on registry host ("host[:port]"). Host names compare as DNS
// names do, ignoring case; ports compare exactly.
func (r Repository) OnHost(host string) bool { return strings.EqualFold(r.Host(), host) }

// Path is the repository path inside the registry, as registry notifications name it.
func (r Repository) Path() string {
	_, p, _ := strings.Cut(string(r), "/")
	return p
}

// Tag gives "repo:tag".
func (r Repository) Tag(tag string) string { return string(r) + ":" + tag }

// Digest gives "repo@digest".
func (r Repository) Digest(digest string) string { return string(r) + "@" + digest }

// ParseRepository checks that s has a registry host and a path, and no tag or digest.
func ParseRepository(s string) (Repository, error) {
	host, path, ok := strings.Cut(s, "/")
	if !ok || path == "" || host == "" {
		return "", fmt.Errorf("%q is not a repository: want host[:port]/path", s)
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", fmt.Errorf("%q is not a repository: %q does not look like a registry host (want host[:port]/path)", s, host)
	}
	if strings.Contains(path, "@") || strings.Contains(path, ":") {
		return "", fmt.Errorf("%q is not a repository: remove the tag or digest", s)
	}
	if path != strings.ToLower(path) {
		return "", fmt.Errorf("%q is not a repository: repository paths are lower case", s)
	}
	return Repository(s), nil
}
