package daemon

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/registry"
)

// Option changes how Start (and Run, RunAgent) run.
type Option func(*options) error

type options struct {
	log      *slog.Logger      // default: discard
	metrics  *metrics.Metrics  // default: a new registry, served on cfg.Metrics
	registry registry.Client   // default: insecure hosts from the config
	agent    []builders.Option // RunAgent's agent options, after its defaults
}

func newOptions(opts []Option) (*options, error) {
	o := &options{
		log:     slog.New(slog.DiscardHandler),
		metrics: metrics.New(prometheus.NewRegistry()),
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
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

// WithAgentOptions are passed to the builder agent RunAgent starts, after the logger,
// metrics and builder.maxAttempts (so they may override them); e.g. builders.WithConcurrency.
func WithAgentOptions(opts ...builders.Option) Option {
	return func(o *options) error { o.agent = append(o.agent, opts...); return nil }
}
