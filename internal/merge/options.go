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
	// policies are the pipelines' verify policies by pipeline name; default none.
	policies  map[string]Policy
	buildWait time.Duration // default DefaultBuildWait
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

// WithPolicies are the verify policies of the pipelines that have one (pipelines[].verify),
// by pipeline name: an arch image no build of promoter's reported is merged only when its
// pipeline's policy accepts it. The default is none.
func WithPolicies(policies map[string]Policy) Option {
	return func(o *options) error { o.policies = policies; return nil }
}

// WithBuildWait is how long an arch tag of a pipeline that builds may hold an image no
// build of promoter's reported before its revision fails. The default is DefaultBuildWait.
func WithBuildWait(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("build wait must be positive, got %s", d)
		}
		o.buildWait = d
		return nil
	}
}
