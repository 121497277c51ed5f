package merge

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Option changes a Merger.
type Option func(*options) error

type options struct {
	metrics *metrics.Metrics // default metrics.Discard()
	log     *slog.Logger     // default: discard
	owner   string           // default "promoter"
	lease   time.Duration    // default DefaultLease
}

// WithMetrics records merges, stale events and immutability violations; the default is a
// private registry nobody scrapes.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithOwner names this process in merge leases (logs and status); the daemon passes its
// instance id. The default is "promoter".
func WithOwner(owner string) Option {
	return func(o *options) error {
		if owner == "" {
			return fmt.Errorf("merge lease owner must not be empty")
		}
		o.owner = owner
		return nil
	}
}

// WithLease is how long a merge claim holds without renewal; the owner renews it every
// third of it. The default is DefaultLease.
func WithLease(d time.Duration) Option {
	return func(o *options) error {
		if d < 3*time.Millisecond {
			return fmt.Errorf("merge lease must be at least 3ms, got %s", d)
		}
		o.lease = d
		return nil
	}
}
