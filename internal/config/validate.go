package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/types"
)

// Problem is one thing wrong with a configuration, at a path such as pipelines[1].platforms[0].
type Problem struct {
	Path string
	Msg  string
}

func (p Problem) String() string { return p.Path + ": " + p.Msg }

// ValidationError lists every problem found; Load returns it so all of them can be fixed
// in one go.
type ValidationError struct {
	Problems []Problem
}

// Is makes every ValidationError ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("invalid configuration (%d problems):\n%s", len(e.Problems), strings.Join(lines, "\n"))
}

type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var pipelineName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// applyDefaults fills per-pipeline defaults that viper cannot express for list items.
func (c *Config) applyDefaults() {
	for i := range c.Pipelines {
		p := &c.Pipelines[i]
		if p.ArchTag == "" {
			p.ArchTag = types.DefaultArchTag
		}
		if p.Source.Repo == "" {
			// A merge-only pipeline builds nothing: no build default applies to it (not
			// even the executor), and validation refuses build settings on it.
			continue
		}
		if p.Build.Executor == "" {
			p.Build.Executor = string(types.ExecutorKubernetes)
		}
		if p.Build.Context == "" {
			p.Build.Context = "."
		}
		if p.Build.Dockerfile == "" {
			p.Build.Dockerfile = "Dockerfile"
		}
		if p.Source.Branch == "" {
			p.Source.Branch = "main"
		}
		if p.Build.Cache.Ref == "" {
			p.Build.Cache.Ref = string(types.DefaultCacheRef)
		}
		if p.Build.Cache.Mode == "" {
			p.Build.Cache.Mode = builders.DefaultCacheMode
		}
		if p.Build.Provenance == "" {
			p.Build.Provenance = builders.DefaultProvenance
		}
	}
}

// Validate checks the whole configuration and returns a *ValidationError listing every
// problem, or nil. It keeps the pipelines it parsed for DomainPipelines: a write to c, so
// not while another goroutine reads c.
func (c *Config) Validate() error { return c.validate(nil) }

func (c *Config) validate(ps problems) error {
	checkAddr(&ps, "listen", c.Listen, false)
	checkAddr(&ps, "metrics", c.Metrics, true)
	checkAddr(&ps, "status", c.Status, true)
	if c.Status != "" && (c.Status == c.Listen || c.Status == c.Metrics) && !strings.HasSuffix(c.Status, ":0") {
		ps.add("status", "%q is also listen or metrics: the status API needs a listener of its own", c.Status)
	}
	if c.DataDir == "" && c.NATS.URL == "" {
		ps.add("dataDir", "must be set when nats.url is empty (the embedded server stores there)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		ps.add("logLevel", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		ps.add("logFormat", "%q is not one of text, json", c.LogFormat)
	}
	if c.ReconcileInterval <= 0 {
		ps.add("reconcileInterval", "must be positive, got %s", c.ReconcileInterval)
	}
	switch {
	case c.NATS.Replicas < 0 || c.NATS.Replicas > 5:
		ps.add("nats.replicas", "must be between 0 (automatic) and 5, got %d", c.NATS.Replicas)
	case c.NATS.Replicas > 1 && c.NATS.URL == "":
		ps.add("nats.replicas", "is %d but nats.url is empty: the embedded server is a single node (set nats.url to a JetStream cluster, or leave nats.replicas unset)", c.NATS.Replicas)
	}
	c.validateServer(&ps)
	if c.Events.MaxBodyBytes <= 0 {
		ps.add("events.maxBodyBytes", "must be positive, got %d", c.Events.MaxBodyBytes)
	}
	c.validateReceiverSecrets(&ps)
	checkSecret(&ps, "auth.statusToken", c.Auth.StatusToken)
	checkSecret(&ps, "keys.password", c.Keys.Password)
	c.validateSign(&ps)
	if c.Promote.Jobs < 1 {
		ps.add("promote.jobs", "must be at least 1, got %d", c.Promote.Jobs)
	}
	if c.Promote.Timeout <= 0 {
		ps.add("promote.timeout", "must be positive, got %s", c.Promote.Timeout)
	}
	c.validateBuilder(&ps)
	c.validateRegistries(&ps)
	c.validatePipelines(&ps)
	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

func (c *Config) validateServer(ps *problems) {
	s := c.Server
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"server.readHeaderTimeout", s.ReadHeaderTimeout}, {"server.readTimeout", s.ReadTimeout},
		{"server.writeTimeout", s.WriteTimeout}, {"server.idleTimeout", s.IdleTimeout},
	} {
		if d.v <= 0 {
			ps.add(d.key, "must be positive, got %s", d.v)
		}
	}
	if s.MaxHeaderBytes < 1024 {
		ps.add("server.maxHeaderBytes", "must be at least 1024, got %d", s.MaxHeaderBytes)
	}
	if s.MaxInFlight < 1 {
		ps.add("server.maxInFlight", "must be at least 1, got %d", s.MaxInFlight)
	}
	if s.MaxConns < 0 {
		ps.add("server.maxConns", "must not be negative (0 derives it from the open-file limit), got %d", s.MaxConns)
	}
	if s.MaxConnsPerClient < 0 {
		ps.add("server.maxConnsPerClient", "must not be negative (0 is a quarter of server.maxConns), got %d", s.MaxConnsPerClient)
	}
}

func (c *Config) validateBuilder(ps *problems) {
	for i, s := range c.Builder.Platforms {
		if _, err := types.ParsePlatform(s); err != nil {
			ps.add(fmt.Sprintf("builder.platforms[%d]", i), "%v", err)
		}
	}
	if c.Builder.MaxAttempts < 1 {
		ps.add("builder.maxAttempts", "must be at least 1, got %d", c.Builder.MaxAttempts)
	}
	if c.Builder.Deadline <= 0 {
		ps.add("builder.deadline", "must be positive, got %s", c.Builder.Deadline)
	}
	if c.Builder.TTL < 0 {
		ps.add("builder.ttl", "must not be negative, got %s", c.Builder.TTL)
	}
	if c.Builder.Namespace == "" {
		ps.add("builder.namespace", "must be set")
	}
	if b := c.Builder.BuildKitConfig; b != "" && !kubeName.MatchString(b) {
		ps.add("builder.buildkitConfig", "%q is not a ConfigMap name (lower-case letters, digits, '-' and '.')", b)
	}
}

func (c *Config) validateRegistries(ps *problems) {
	seen := map[string]int{}
	for i, r := range c.Registries {
		path := fmt.Sprintf("registries[%d].host", i)
		switch {
		case r.Host == "":
			ps.add(path, "must be set")
		case strings.ContainsAny(r.Host, "/ "):
			ps.add(path, "%q must be a host[:port], without scheme or path", r.Host)
		}
		if j, dup := seen[r.Host]; dup && r.Host != "" {
			ps.add(path, "%q is already configured at registries[%d]", r.Host, j)
		}
		seen[r.Host] = i
	}
}

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

// pipelinesSeen is what the pipelines before the one checked claimed: names, staging
// repositories, and per platform the first pipeline that builds it with each executor.
// The daemon's in-process agent shares each platform's build queue with remote agents,
// and would take requests it cannot build: one platform has one executor.
type pipelinesSeen struct {
	names, stagings map[string]int
	executors       map[types.Platform]map[types.Executor]int
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

// validateIdentities checks keys.identities: keyless signers by types.TrustedSigner's
// rules, each problem at its path, checked against sign.trustedRoot.
func (c *Config) validateIdentities(ps *problems) {
	for i, id := range c.Keys.Identities {
		at := fmt.Sprintf("keys.identities[%d]", i)
		s := types.TrustedSigner{Issuer: id.Issuer, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp}
		var perr *types.PolicyError
		if err := s.Validate(); errors.As(err, &perr) {
			for _, p := range perr.Problems {
				path := at
				if p.Field != "" {
					path += "." + p.Field
				}
				ps.add(path, "%s", p.Msg)
			}
		}
	}
	if len(c.Keys.Identities) > 0 && c.Sign.TrustedRoot == "" {
		ps.add("sign.trustedRoot", "must be set: keys.identities are checked against a sigstore trusted_root.json naming their Fulcio and timestamp authority")
	}
}

// keylessKeys are the keys of keyless signing, all of which it needs.
const keylessKeys = "sign.fulcioURL, sign.identityToken, sign.tsaURL and sign.trustedRoot"

// validateSign checks sign.*: the format; keyless signing, which needs all its keys,
// excludes keys.cosign and writes bundles only; and witnesses (a TSA, a log), which
// need a trusted root and bundles. The files are read when the daemon starts.
func (c *Config) validateSign(ps *problems) {
	format, err := sign.ParseFormat(c.Sign.Format)
	if err != nil {
		ps.add("sign.format", "%v", err)
	}
	s := c.Sign
	checkSignURLs(ps, s)
	switch {
	case s.Keyless():
		c.validateKeyless(ps)
		if err == nil && format != sign.FormatBundle {
			ps.add("sign.format", "%s cannot hold keyless signatures (cosign reads them from sigstore bundles): use bundle, the default", format)
		}
	case s.Witnessed():
		if s.TrustedRoot == "" {
			ps.add("sign.trustedRoot", "must be set: sign.tsaURL and sign.rekorURL are checked against a sigstore trusted_root.json listing them (cosign trusted-root create), before a signature is pushed")
		}
		if err == nil && format != sign.FormatBundle {
			ps.add("sign.format", "%s cannot carry timestamps or log entries (sign.tsaURL, sign.rekorURL): use bundle, the default", format)
		}
	}
}

// checkSignURLs checks the spelling of the URLs of sign.*; nothing is contacted.
func checkSignURLs(ps *problems, s Sign) {
	if s.FulcioURL != "" && !isHTTPURL(s.FulcioURL) {
		ps.add("sign.fulcioURL", "%q is not an http(s) URL, e.g. https://fulcio.example", s.FulcioURL)
	}
	if s.TSAURL != "" {
		if _, err := sign.TimestampURL(s.TSAURL); err != nil {
			ps.add("sign.tsaURL", "%v", err)
		}
	}
	if s.RekorURL != "" && !isHTTPURL(s.RekorURL) {
		ps.add("sign.rekorURL", "%q is not an http(s) URL, e.g. https://log2025-1.rekor.sigstore.dev", s.RekorURL)
	}
}

// isHTTPURL reports whether s is an absolute http(s) URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// validateKeyless checks that keyless signing has all its keys and no key of its own.
func (c *Config) validateKeyless(ps *problems) {
	s := c.Sign
	for _, k := range []struct{ key, v string }{
		{"sign.fulcioURL", s.FulcioURL}, {"sign.identityToken", s.IdentityToken},
		{"sign.tsaURL", s.TSAURL}, {"sign.trustedRoot", s.TrustedRoot},
	} {
		if k.v == "" {
			ps.add(k.key, "must be set: keyless signing needs %s", keylessKeys)
		}
	}
	if c.Keys.Cosign != "" {
		ps.add("keys.cosign", "is set and so is keyless signing (%s): sign with one, remove the other", keylessKeys)
	}
}

var (
	buildArgName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretID     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	secretKey    = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
	// kubeName is a DNS subdomain, the grammar of Secret names.
	kubeName   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	provenance = regexp.MustCompile(`^mode=(min|max)(,[a-z-]+=[^,]*)*$`)
)

// mergeOnly is what a pipeline without source.repo is, in the words of its problems.
const mergeOnly = "a pipeline with source.repo builds its arch tags; one without only merges, signs and promotes the arch tags CI pushes to staging"

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

func checkAddr(ps *problems, path, addr string, optional bool) {
	if addr == "" {
		if !optional {
			ps.add(path, "must be set, e.g. :8080")
		}
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		ps.add(path, "%q is not host:port: %v", addr, err)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ps.add(path, "%q: port %q is not a number from 0 to 65535", addr, port)
	}
}

func checkSecret(ps *problems, path string, s Secret) {
	if !s.IsSet() {
		return
	}
	if _, err := s.Resolve(); err != nil {
		ps.add(path, "%s: %v", s, err)
	}
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

// Pipeline finds a pipeline by name.
func (c *Config) Pipeline(name string) (Pipeline, bool) {
	for _, p := range c.Pipelines {
		if p.Name == name {
			return p, true
		}
	}
	return Pipeline{}, false
}

// InsecureHosts lists the registries configured for plain HTTP.
func (c *Config) InsecureHosts() []string {
	var hosts []string
	for _, r := range c.Registries {
		if r.Insecure {
			hosts = append(hosts, r.Host)
		}
	}
	return hosts
}
