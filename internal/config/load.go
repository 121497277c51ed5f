package config

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/promoter-dev/promoter/internal/advance"
	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/listen"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
)

// defaults are every scalar key with its default. Listing each key here is also what lets
// viper read it from a PROMOTER_* environment variable. The webhook receivers' secrets
// (events.Receivers) are added to it, unset.
var defaults = withReceiverSecrets(map[string]any{
	"listen":                   ":8080",
	"metrics":                  ":9090",
	"pprof":                    false,
	"status":                   "127.0.0.1:8081",
	"dataDir":                  "./data",
	"logLevel":                 "info",
	"logFormat":                "text",
	"reconcileInterval":        advance.DefaultReconcileInterval,
	"nats.url":                 "",
	"nats.credentials":         "",
	"nats.replicas":            0,
	"server.readHeaderTimeout": listen.DefaultReadHeaderTimeout,
	"server.readTimeout":       listen.DefaultReadTimeout,
	"server.writeTimeout":      listen.DefaultWriteTimeout,
	"server.idleTimeout":       listen.DefaultIdleTimeout,
	"server.maxHeaderBytes":    listen.DefaultMaxHeaderBytes,
	"server.maxInFlight":       listen.DefaultMaxInFlight,
	"server.maxConns":          0,
	"server.maxConnsPerClient": 0,
	"events.maxBodyBytes":      events.DefaultMaxBodyBytes,
	"auth.statusToken":         "",
	"auth.insecureNoAuth":      false,
	"keys.cosign":              "",
	"keys.password":            "",
	"keys.public":              []string{},
	"sign.format":              string(sign.DefaultFormat),
	"promote.jobs":             promote.DefaultJobs,
	"promote.timeout":          promote.DefaultTimeout,
	"builder.namespace":        builders.DefaultNamespace,
	"builder.platforms":        []string{},
	"builder.image":            builders.DefaultImage,
	"builder.jobTemplate":      "",
	"builder.registrySecret":   builders.DefaultRegistrySecret,
	"builder.buildkitConfig":   "",
	"builder.maxAttempts":      builders.DefaultMaxAttempts,
	"builder.deadline":         builders.DefaultDeadline,
	"builder.ttl":              builders.DefaultTTL,
	"builder.hostUsers":        true,
})

// withReceiverSecrets adds the secret key of every webhook receiver to d, unset.
func withReceiverSecrets(d map[string]any) map[string]any {
	for _, e := range events.Receivers {
		d[e.SecretKey] = ""
	}
	return d
}

// DefaultString is the default of a string key (flags show it as theirs); it panics on a
// key that is not a string key, which is a programming error.
func DefaultString(key string) string { return defaults[key].(string) }

// ScalarKeys lists every scalar configuration key (the lists registries and pipelines aside).
func ScalarKeys() []string {
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	return keys
}

// EnvName is the environment variable that sets key, e.g. PROMOTER_NATS_URL for nats.url.
func EnvName(key string) string {
	return "PROMOTER_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Input says where Load reads from.
type Input struct {
	// File is a YAML file; empty reads none.
	File string
	// Flags maps configuration keys to command-line flags; a flag the user set wins over
	// the environment and the file.
	Flags map[string]*pflag.Flag
}

// Load reads the file, the environment and the flags, applies defaults and validates. The
// error lists every problem, each with its path.
func Load(src Input) (*Config, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
		if err := v.BindEnv(k, EnvName(k)); err != nil {
			return nil, fmt.Errorf("binding %s: %w", k, err)
		}
	}
	for k, f := range src.Flags {
		if f == nil || !f.Changed {
			continue
		}
		if err := v.BindPFlag(k, f); err != nil {
			return nil, fmt.Errorf("binding flag --%s: %w", f.Name, err)
		}
	}
	if src.File != "" {
		if _, err := os.Stat(src.File); err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		v.SetConfigFile(src.File)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("reading config file %s: %w", src.File, err)
		}
	}
	var c Config
	var md mapstructure.Metadata
	if err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) { dc.Metadata = &md }); err != nil {
		return nil, fmt.Errorf("config file %s: %w", src.File, err)
	}
	c.applyDefaults()
	var ps problems
	sort.Strings(md.Unused)
	for _, key := range md.Unused {
		ps.add(key, "unknown key (misspelt? see the configuration reference in README.md)")
	}
	if err := c.validate(ps); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default is the configuration with no file, environment or flags: what `promoter serve`
// runs with out of the box.
func Default() *Config {
	c, err := Load(Input{})
	if err != nil {
		panic(fmt.Sprintf("defaults do not validate: %v", err))
	}
	return c
}
