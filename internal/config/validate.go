package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/promoter-dev/promoter/internal/builders"
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

var (
	buildArgName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretID     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	secretKey    = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
	// kubeName is a DNS subdomain, the grammar of Secret names.
	kubeName   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	provenance = regexp.MustCompile(`^mode=(min|max)(,[a-z-]+=[^,]*)*$`)
)

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
