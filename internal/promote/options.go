package promote

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Option changes a Promoter.
type Option func(*options) error

type options struct {
	jobs    int                                         // default DefaultJobs
	timeout time.Duration                               // default DefaultTimeout
	metrics *metrics.Metrics                            // default metrics.Discard()
	log     *slog.Logger                                // default: discard
	verify  func(ctx context.Context, ref string) error // default nil: no destination can require a signature
}

// WithJobs bounds the concurrent requests per registry host (config promote.jobs); the
// default is DefaultJobs.
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("promote jobs must be at least 1, got %d", n)
		}
		o.jobs = n
		return nil
	}
}

// WithTimeout bounds one promotion of one destination, retries included (config
// promote.timeout); the default is DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("promote timeout must be positive, got %s", d)
		}
		o.timeout = d
		return nil
	}
}

// WithMetrics records bytes, durations and outcomes; the default is a private registry
// nobody scrapes.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithLogger receives one info line per destination promoted and a debug line per
// artifact; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithVerify is the signature gate of destinations with RequireSignature
// (PromoteDestination): it must accept the source, pinned by digest, before anything is
// copied. Without it, promoting to such a destination fails.
func WithVerify(fn func(ctx context.Context, ref string) error) Option {
	return func(o *options) error { o.verify = fn; return nil }
}
