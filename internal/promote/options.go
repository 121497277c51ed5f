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
	jobs     int                                         // default DefaultJobs
	timeout  time.Duration                               // default DefaultTimeout
	metrics  *metrics.Metrics                            // default metrics.Discard()
	log      *slog.Logger                                // default: discard
	verify   func(ctx context.Context, ref string) error // default nil: no target can require a signature
	dryRun   bool                                        // default false: promotions write
	progress func(Event)                                 // default nil: no events
}

// WithJobs bounds the concurrent requests per registry host (config promote.jobs); the
// default is DefaultJobs.
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return optionError(fmt.Sprintf("promote jobs must be at least 1, got %d", n))
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
			return optionError(fmt.Sprintf("promote timeout must be positive, got %s", d))
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

// WithVerify is the signature gate of targets with RequireSignature: it must accept the
// source, pinned by digest, before anything is copied. Without it, promoting to such a
// target fails with ErrNoVerifier.
func WithVerify(fn func(ctx context.Context, ref string) error) Option {
	return func(o *options) error { o.verify = fn; return nil }
}

// WithDryRun makes every promotion plan and check its destinations but write nothing:
// Result.Items says what would be copied, mounted or skipped, and no metric is recorded.
// The default writes.
func WithDryRun() Option {
	return func(o *options) error { o.dryRun = true; return nil }
}

// WithProgress receives one Event per blob or manifest handled. Calls are serialized,
// across the targets of a promotion and across promotions. The default sends none.
func WithProgress(fn func(Event)) Option {
	return func(o *options) error { o.progress = fn; return nil }
}
