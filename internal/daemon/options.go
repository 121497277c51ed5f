package daemon

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
)

// Option changes how Run runs.
type Option func(*options) error

type options struct {
	log      *slog.Logger                   // default: discard
	metrics  *metrics.Metrics               // default: a new registry, served on cfg.Metrics
	registry registry.Client                // default: insecure hosts from the config
	ready    func(addr, metricsAddr string) // called once the listeners are open
	addrs    func(Addrs)                    // called once the listeners are open
	agent    []builders.Option              // RunAgent's agent options, after its defaults
}

// Addrs are the addresses the daemon listens on; a disabled listener's is empty.
type Addrs struct {
	Listen  string // webhooks, /healthz, /readyz
	Metrics string // /metrics
	Status  string // /v1/revisions
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMetrics sets the collectors; the default is a fresh registry.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithRegistryClient sets how registries are reached; the default uses the config's
// insecure hosts and the docker config credentials.
func WithRegistryClient(c registry.Client) Option {
	return func(o *options) error { o.registry = c; return nil }
}

// WithReadyHook is called with the bound addresses once the servers listen; tests use it
// with ":0" addresses.
func WithReadyHook(fn func(addr, metricsAddr string)) Option {
	return func(o *options) error { o.ready = fn; return nil }
}

// WithAddrsHook is called with every bound address once the servers listen; tests use it
// with ":0" addresses to find the status listener.
func WithAddrsHook(fn func(Addrs)) Option {
	return func(o *options) error { o.addrs = fn; return nil }
}

// WithAgentOptions are passed to the builder agent RunAgent starts, after the logger,
// metrics and builder.maxAttempts (so they may override them); e.g. builders.WithConcurrency.
func WithAgentOptions(opts ...builders.Option) Option {
	return func(o *options) error { o.agent = append(o.agent, opts...); return nil }
}

func defaults() *options {
	return &options{
		log:     slog.New(slog.DiscardHandler),
		metrics: metrics.New(prometheus.NewRegistry()),
	}
}
