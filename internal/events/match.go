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

// stagingFor finds the pipeline staging to repository path, or says why none is
// (reasonNoPipeline, reasonAmbiguousPipeline, reasonOtherRegistry). Registries report the
// host a client used (request.host), which behind a proxy or a Service differs from the
// name in the configuration, so the path decides; the host only breaks a tie between
// pipelines that stage to the same path on different registries, and when it breaks none
// (no host, or another) the push is ignored rather than given to a guess. An ECR host is
// exact (the event's account and region, ecrHost): a pipeline staging to another ECR
// registry is never taken for it.
func (r *Receiver) stagingFor(path, host string) (pipeline, string) {
	var found []pipeline
	for _, p := range r.pipelines {
		if p.staging.Path() == path {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return pipeline{}, reasonNoPipeline
	}
	if ecrRegistry.MatchString(host) {
		kept := found[:0:0]
		for _, p := range found {
			if !ecrRegistry.MatchString(p.staging.Host()) || p.staging.OnHost(host) {
				kept = append(kept, p)
			}
		}
		if len(kept) == 0 {
			return pipeline{}, reasonOtherRegistry
		}
		found = kept
	}
	if len(found) == 1 {
		return found[0], ""
	}
	for _, p := range found {
		if p.staging.OnHost(host) {
			return p, ""
		}
	}
	return pipeline{}, reasonAmbiguousPipeline
}

// ecrRegistry matches the host of an Amazon ECR private registry,
// <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn].
var ecrRegistry = regexp.MustCompile(`(?i)^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// hostAndPath splits a URL-shaped image location ("https://quay.io/ns/repo",
// "host:5000/v2/ns/repo:tag", "host/ns/repo") into the registry host and what follows it,
// without a scheme or the registry API's /v2/ prefix. host is "" when the location names
// none: without a scheme, a first element that has no dot or port and is not localhost
// is part of the path, as in a Docker reference.
func hostAndPath(s string) (host, path string) {
	s = strings.TrimSpace(s)
	scheme := false
	if i := strings.Index(s, "://"); i >= 0 {
		s, scheme = s[i+len("://"):], true
	}
	host, path, ok := strings.Cut(s, "/")
	if !scheme && (!ok || path == "" || !strings.ContainsAny(host, ".:") && host != "localhost") {
		return "", s
	}
	path = strings.TrimPrefix(path, "v2/")
	return host, path
}

// urlHost is the registry host of "host/path:tag", "host/path@digest" or a URL of the
// repository, "" for a reference without one.
func urlHost(ref string) string {
	host, _ := hostAndPath(ref)
	return host
}

// hostField reads a host field that may be URL-shaped ("https://host/"): the host alone.
func hostField(s string) string {
	if !strings.Contains(s, "/") {
		return s
	}
	return urlHost(s)
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
