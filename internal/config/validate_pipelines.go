package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/types"
)

// pipelinesSeen is what the pipelines before the one checked claimed: names, staging
// repositories, and per platform the first pipeline that builds it with each executor.
// The daemon's in-process agent shares each platform's build queue with remote agents,
// and would take requests it cannot build: one platform has one executor.
type pipelinesSeen struct {
	names, stagings map[string]int
	executors       map[types.Platform]map[types.Executor]int
}

// mergeOnly is what a pipeline without source.repo is, in the words of its problems.
const mergeOnly = "a pipeline with source.repo builds its arch tags; one without only merges, signs and promotes the arch tags CI pushes to staging"

// validatePipelines checks every pipeline and keeps each, parsed, as the domain packages
// take it (DomainPipelines): what validation parses is what the daemon runs, so no
// parse error can be reported by one and dropped by the other.
func (c *Config) validatePipelines(ps *problems) {
	seen := pipelinesSeen{names: map[string]int{}, stagings: map[string]int{}, executors: map[types.Platform]map[types.Executor]int{}}
	needKey, needPublic := false, false
	c.domain = make([]types.Pipeline, 0, len(c.Pipelines))
	for i, p := range c.Pipelines {
		d, public := seen.pipeline(ps, i, p)
		c.domain = append(c.domain, d)
		needKey = needKey || p.Sign
		needPublic = needPublic || public
	}
	keyless := c.Sign.Keyless()
	if needKey && c.Keys.Cosign == "" && !keyless {
		ps.add("keys.cosign", "must be set: a pipeline has sign: true (or sign keyless: %s)", keylessKeys)
	}
	if needPublic && len(c.Keys.Public) == 0 && len(c.Keys.Identities) == 0 && c.Keys.Cosign == "" && !keyless {
		ps.add("keys.public", "must be set: a destination has requireSignature: true")
	}
	c.validateIdentities(ps)
}

// pipeline checks pipelines[i] and returns it parsed, and whether a destination requires
// a signature (which needs keys to verify with).
func (s pipelinesSeen) pipeline(ps *problems, i int, p Pipeline) (d types.Pipeline, requireSignature bool) {
	at := func(field string) string { return fmt.Sprintf("pipelines[%d].%s", i, field) }
	if !pipelineName.MatchString(p.Name) {
		ps.add(at("name"), "%q must be 1-63 lower-case letters, digits or '-'", p.Name)
	} else if j, dup := s.names[p.Name]; dup {
		ps.add(at("name"), "%q is already used by pipelines[%d]", p.Name, j)
	}
	s.names[p.Name] = i
	executor, execErr := types.ParseExecutor(p.Build.Executor)
	platforms := s.platforms(ps, at, i, p, executor, execErr == nil)
	if err := types.ArchTag(p.ArchTag).Validate(platforms); err != nil {
		ps.add(at("archTag"), "%v", err)
	}
	if _, err := types.ParseRepository(p.Staging); err != nil {
		ps.add(at("staging"), "%v", err)
	} else if j, dup := s.stagings[p.Staging]; dup {
		ps.add(at("staging"), "%s is already the staging repository of pipelines[%d]", p.Staging, j)
	}
	s.stagings[p.Staging] = i
	validatePoll(ps, at, p.Source)
	switch {
	case p.Source.Repo == "":
		checkMergeOnly(ps, at, p)
		executor = ""
	case execErr != nil:
		ps.add(at("build.executor"), "%q is not one of kubernetes, local", p.Build.Executor)
	case executor == types.ExecutorKubernetes:
		validateBuild(ps, at, p, platforms)
	case executor == types.ExecutorLocal:
		validateLocal(ps, at, p)
	}
	promote, requireSignature := destinations(ps, at, p)
	validateReleaseTags(ps, at, p)
	validateVerify(ps, at, p)
	return domain(p, platforms, executor, promote), requireSignature
}

// platforms parses pipelines[i].platforms, reporting each that does not parse or is
// listed twice and, for a building pipeline, each also built with another executor.
func (s pipelinesSeen) platforms(ps *problems, at func(string) string, i int, p Pipeline, executor types.Executor, known bool) []types.Platform {
	if len(p.Platforms) == 0 {
		ps.add(at("platforms"), "must list at least one platform, e.g. linux/amd64")
	}
	var platforms []types.Platform
	listed := map[types.Platform]bool{}
	for j, str := range p.Platforms {
		pl, err := types.ParsePlatform(str)
		if err != nil {
			ps.add(at(fmt.Sprintf("platforms[%d]", j)), "%v", err)
			continue
		}
		if listed[pl] {
			ps.add(at(fmt.Sprintf("platforms[%d]", j)), "%s is listed twice", pl)
		}
		listed[pl] = true
		platforms = append(platforms, pl)
		if p.Source.Repo == "" || !known {
			continue // merge-only: no executor builds it; an unknown executor is reported once
		}
		s.claim(ps, at, i, pl, executor)
	}
	return platforms
}

// claim records that pipelines[i] builds pl with executor, reporting another pipeline
// that builds it with another.
func (s pipelinesSeen) claim(ps *problems, at func(string) string, i int, pl types.Platform, executor types.Executor) {
	if s.executors[pl] == nil {
		s.executors[pl] = map[types.Executor]int{}
	}
	if _, ok := s.executors[pl][executor]; !ok {
		s.executors[pl][executor] = i
	}
	for _, other := range types.Executors {
		if j, mixed := s.executors[pl][other]; mixed && other != executor {
			ps.add(at("build.executor"), "%s builds %s while pipelines[%d] builds it with %s; one daemon cannot do both for one platform", executor, pl, j, other)
		}
	}
}

// validateLocal checks a local-executor pipeline, which copies a directory: it reads no
// Dockerfile and no git.
func validateLocal(ps *problems, at func(string) string, p Pipeline) {
	if p.Build.Dir == "" {
		ps.add(at("build.dir"), "must be set: the local executor builds the source tree in this directory")
	}
	checkCacheMode(ps, at, p.Build.Cache.Mode)
	for _, f := range []struct {
		field string
		set   bool
	}{
		{"build.gitSecret", p.Build.GitSecret != ""}, {"build.args", len(p.Build.Args) > 0}, {"build.secrets", len(p.Build.Secrets) > 0},
	} {
		if f.set {
			ps.add(at(f.field), "is used by the kubernetes executor only: the local executor copies build.dir and runs no Dockerfile")
		}
	}
}

// destinations checks and parses pipelines[].promote, and reports whether one requires a
// signature.
func destinations(ps *problems, at func(string) string, p Pipeline) (out []types.Destination, requireSignature bool) {
	dests := map[string]int{}
	for j, d := range p.Promote {
		dp := at(fmt.Sprintf("promote[%d].to", j))
		to, err := types.ParseRepository(d.To)
		switch {
		case err != nil:
			ps.add(dp, "%v", err)
		case d.To == p.Staging:
			ps.add(dp, "%s is the staging repository itself", d.To)
		default:
			if k, dup := dests[d.To]; dup {
				ps.add(dp, "%s is already promote[%d]", d.To, k)
			}
		}
		dests[d.To] = j
		if d.RequireSignature {
			requireSignature = true
			if !p.Sign {
				ps.add(at(fmt.Sprintf("promote[%d].requireSignature", j)), "requires sign: true on the pipeline, or nothing would ever be promoted")
			}
		}
		out = append(out, types.Destination{To: to, RequireSignature: d.RequireSignature, MutableTags: d.MutableTags})
	}
	return out, requireSignature
}

// checkMergeOnly refuses what only a building pipeline reads on one without source.repo,
// each key with its path: they would be silently ignored.
func checkMergeOnly(ps *problems, at func(string) string, p Pipeline) {
	if p.Source.Branch != "" {
		ps.add(at("source.branch"), "is set but source.repo is not: %s (set source.repo, or remove source.branch)", mergeOnly)
	}
	for _, key := range setKeys(p.Build) {
		ps.add(at("build."+key), "is set but the pipeline has no source.repo: %s (set source.repo, or remove build)", mergeOnly)
	}
}

// validateBuild checks what a kubernetes-executor pipeline passes to BuildKit.
func validateBuild(ps *problems, at func(string) string, p Pipeline, platforms []types.Platform) {
	b := p.Build
	if b.GitSecret != "" {
		if !kubeName.MatchString(b.GitSecret) {
			ps.add(at("build.gitSecret"), "%q is not a Secret name (lower-case letters, digits, '-' and '.')", b.GitSecret)
		}
		if strings.HasPrefix(p.Source.Repo, "git://") {
			ps.add(at("build.gitSecret"), "source.repo %s uses git://, which has no authentication: use its https:// or ssh:// URL", p.Source.Repo)
		}
	}
	args := map[string]int{}
	for j, a := range b.Args {
		name, _, ok := strings.Cut(a, "=")
		switch {
		case !ok || !buildArgName.MatchString(name):
			ps.add(at(fmt.Sprintf("build.args[%d]", j)), "%q is not NAME=value (NAME: letters, digits and '_')", a)
		default:
			if k, dup := args[name]; dup {
				ps.add(at(fmt.Sprintf("build.args[%d]", j)), "%s is already set by build.args[%d]", name, k)
			}
			args[name] = j
		}
	}
	ids := map[string]int{}
	for j, s := range b.Secrets {
		sp := func(f string) string { return at(fmt.Sprintf("build.secrets[%d].%s", j, f)) }
		switch {
		case !secretID.MatchString(s.ID):
			ps.add(sp("id"), "%q must be 1-128 letters, digits, '_', '.' or '-'", s.ID)
		case s.ID == "GIT_AUTH_TOKEN" || s.ID == "GIT_AUTH_HEADER":
			ps.add(sp("id"), "%s is BuildKit's git credential: name the Secret in build.gitSecret instead", s.ID)
		default:
			if k, dup := ids[s.ID]; dup {
				ps.add(sp("id"), "%s is already build.secrets[%d]", s.ID, k)
			}
			ids[s.ID] = j
		}
		if !kubeName.MatchString(s.Secret) {
			ps.add(sp("secret"), "%q is not a Secret name (lower-case letters, digits, '-' and '.')", s.Secret)
		}
		if !secretKey.MatchString(s.Key) {
			ps.add(sp("key"), "%q is not a Secret key (letters, digits, '-', '_' and '.')", s.Key)
		}
	}
	if checkCacheMode(ps, at, b.Cache.Mode) && b.Cache.Mode != "off" {
		if err := types.CacheRef(b.Cache.Ref).Validate(types.Repository(p.Staging), platforms); err != nil {
			ps.add(at("build.cache.ref"), "%v", err)
		}
	}
	if b.Provenance != "off" && !provenance.MatchString(b.Provenance) {
		ps.add(at("build.provenance"), "%q is not off, mode=min or mode=max (optionally followed by ,key=value BuildKit options)", b.Provenance)
	}
}

// validatePoll checks source.poll and source.pollToken.
func validatePoll(ps *problems, at func(string) string, s Source) {
	switch {
	case s.Poll < 0:
		ps.add(at("source.poll"), "must not be negative (0 turns polling off), got %s", s.Poll)
	case s.Poll > 0 && s.Poll < sources.MinInterval:
		ps.add(at("source.poll"), "%s is below the minimum of %s: each poll is a request to the git server, per pipeline and per daemon replica", s.Poll, sources.MinInterval)
	}
	if s.Poll > 0 && s.Repo == "" {
		ps.add(at("source.repo"), "must be set: source.poll lists this repository's branch")
	}
	if !s.PollToken.IsSet() {
		return
	}
	checkSecret(ps, at("source.pollToken"), s.PollToken)
	if s.Poll == 0 {
		ps.add(at("source.pollToken"), "is used only by source.poll, which is off: set source.poll, or remove the token")
	}
	if u, err := url.Parse(s.Repo); s.Repo != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http")) {
		ps.add(at("source.pollToken"), "is sent to an http(s) source.repo only; %s is polled with the daemon's own git configuration (for ssh: its keys and known hosts)", s.Repo)
	}
}

// validateReleaseTags checks source.releaseTags: patterns of tags of source.repo, none of
// which may be a destination's mutable tag (a release tag never moves).
func validateReleaseTags(ps *problems, at func(string) string, p Pipeline) {
	rt := types.ReleaseTags(p.Source.ReleaseTags)
	if len(rt) == 0 {
		return
	}
	if p.Source.Repo == "" {
		ps.add(at("source.releaseTags"), "needs source.repo: release tags are the tag pushes its webhooks report")
	}
	if err := rt.Validate(); err != nil {
		ps.add(at("source.releaseTags"), "%v", err)
		return
	}
	for j, d := range p.Promote {
		for _, mt := range d.MutableTags {
			if rt.Match(mt) {
				ps.add(at(fmt.Sprintf("promote[%d].mutableTags", j)), "%s matches source.releaseTags, but a release tag is immutable and a mutable tag moves: rename the tag or narrow the patterns", mt)
			}
		}
	}
}

func checkCacheMode(ps *problems, at func(string) string, mode string) bool {
	switch mode {
	case "max", "min", "off":
		return true
	}
	ps.add(at("build.cache.mode"), "%q is not one of max, min, off", mode)
	return false
}

// domain is p as the domain packages take it, from the values validation parsed
// (platforms, executor, destinations); a merge-only pipeline has no executor.
func domain(p Pipeline, platforms []types.Platform, executor types.Executor, promote []types.Destination) types.Pipeline {
	d := types.Pipeline{
		Name:      p.Name,
		Source:    types.Source{Repo: p.Source.Repo, Branch: p.Source.Branch, Poll: p.Source.Poll, ReleaseTags: p.Source.ReleaseTags},
		Platforms: platforms,
		Staging:   types.Repository(p.Staging),
		ArchTag:   types.ArchTag(p.ArchTag),
		Sign:      p.Sign,
		Verify:    p.Verify.domain(),
		Build: types.BuildSpec{
			Executor: executor, Context: p.Build.Context, Dockerfile: p.Build.Dockerfile,
			Base: p.Build.Base, Dir: p.Build.Dir, GitSecret: p.Build.GitSecret, Args: p.Build.Args,
		},
		Promote: promote,
	}
	for _, s := range p.Build.Secrets {
		d.Build.Secrets = append(d.Build.Secrets, types.BuildSecret{ID: s.ID, Secret: s.Secret, Key: s.Key})
	}
	if p.Build.Cache.Mode != "off" {
		d.Build.Cache, d.Build.CacheMode = types.CacheRef(p.Build.Cache.Ref), p.Build.Cache.Mode
	}
	if p.Build.Provenance != "off" {
		d.Build.Provenance = p.Build.Provenance
	}
	return d
}

// DomainPipelines are the pipelines as the domain packages take them, in configuration
// order, parsed when the configuration was last validated (Load, Validate): change
// Pipelines, and Validate again before reading them.
func (c *Config) DomainPipelines() []types.Pipeline {
	return slices.Clone(c.domain)
}
