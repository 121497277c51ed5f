package listen

import (
	"log/slog"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Option changes a Server.
type Option func(*options) error

type options struct {
	limits  Limits           // default: the Default* constants
	conns   *Conns           // default: a budget of its own, AutoMaxConns()
	log     *slog.Logger     // default: discard
	metrics *metrics.Metrics // default: metrics.Discard()
	probes  []string         // default: none
	// onShutdown run when Shutdown starts; default: none.
	onShutdown []func()
}

// WithLimits sets the timeouts and limits; zero fields keep their defaults.
func WithLimits(l Limits) Option {
	return func(o *options) error { o.limits = l; return nil }
}

// WithConns shares a connection budget with the process's other listeners; the default
// is a budget of this listener's own of AutoMaxConns().
func WithConns(c *Conns) Option {
	return func(o *options) error { o.conns = c; return nil }
}

// WithLogger sets the logger, also used for the server's own errors; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMetrics sets the collectors; the default is metrics.Discard().
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithOnShutdown runs f when Shutdown starts, to end long-lived responses (the status
// page's event streams) that a graceful shutdown would otherwise wait for until its
// deadline.
func WithOnShutdown(f func()) Option {
	return func(o *options) error { o.onShutdown = append(o.onShutdown, f); return nil }
}

// WithProbes names paths (such as /healthz and /readyz) served without an in-flight slot:
// a probe must tell the truth about the process even when the listener is saturated.
// Their connections still count against the budget.
func WithProbes(paths ...string) Option {
	return func(o *options) error { o.probes = append(o.probes, paths...); return nil }
}
