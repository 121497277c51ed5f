package events

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/promoter-dev/promoter/internal/types"
)

// pipeline is what the receivers need of a configured pipeline.
type pipeline struct {
	name       string
	staging    types.Repository
	archTags   types.ArchTagMatcher
	cache      types.CacheRef // "" when the pipeline has no build cache
	platforms  []types.Platform
	sourceRepo string // normalised with normaliseRepo
	branch     string
	releases   types.ReleaseTags
}

func newPipeline(p types.Pipeline) pipeline {
	return pipeline{
		name:       p.Name,
		staging:    p.Staging,
		archTags:   p.ArchTag.Compile(p.Platforms),
		cache:      p.Build.Cache,
		platforms:  p.Platforms,
		sourceRepo: normaliseRepo(p.Source.Repo),
		branch:     p.Source.Branch,
		releases:   p.Source.ReleaseTags,
	}
}

// stagingFor finds the pipeline staging to repository path. Registries report the host a
// client used (request.host), which behind a proxy or a Service differs from the name in
// the configuration, so the path decides; the host only breaks a tie between pipelines
// that stage to the same path on different registries.
func (r *Receiver) stagingFor(path, host string) (pipeline, bool) {
	var found []pipeline
	for _, p := range r.pipelines {
		if p.staging.Path() == path {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return pipeline{}, false
	case 1:
		return found[0], true
	}
	for _, p := range found {
		if p.staging.OnHost(host) {
			return p, true
		}
	}
	return pipeline{}, false
}

// sourceFor finds the pipeline following repo (any URL form) at branch.
func (r *Receiver) sourceFor(repos []string, branch string) (pipeline, bool) {
	return r.repoFor(repos, func(p pipeline) bool { return p.branch == branch })
}

// releaseFor finds the pipeline of repo (any URL form) whose release patterns match tag.
func (r *Receiver) releaseFor(repos []string, tag string) (pipeline, bool) {
	return r.repoFor(repos, func(p pipeline) bool { return p.releases.Match(tag) })
}

// repoFor finds the first pipeline of repo (any URL form) that wants.
func (r *Receiver) repoFor(repos []string, wants func(pipeline) bool) (pipeline, bool) {
	for _, p := range r.pipelines {
		if p.sourceRepo == "" || !wants(p) {
			continue
		}
		for _, repo := range repos {
			if repo != "" && normaliseRepo(repo) == p.sourceRepo {
				return p, true
			}
		}
	}
	return pipeline{}, false
}

var scpLike = regexp.MustCompile(`^(?:[A-Za-z0-9_.-]+@)?([A-Za-z0-9.-]+(?::[0-9]+)?):(.+)$`)

// normaliseRepo reduces the URL forms of one git repository (https://host/org/repo.git,
// ssh://git@host/org/repo, git@host:org/repo.git, host/org/repo) to "host/org/repo",
// lower-cased.
func normaliseRepo(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	var host, path string
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		host, path = u.Hostname(), u.Path
		if p := u.Port(); p != "" && u.Scheme != "ssh" {
			host += ":" + p
		}
	} else if m := scpLike.FindStringSubmatch(s); m != nil && !strings.Contains(m[1], "/") {
		host, path = m[1], m[2]
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
	} else {
		host, path, _ = strings.Cut(s, "/")
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	return strings.ToLower(host + "/" + path)
}

// signatureTag matches the tags cosign and promoter write next to an image: the referrers
// fallback tag sha256-<hex> and the legacy sha256-<hex>.sig/.att/.sbom tags.
var signatureTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$`)
