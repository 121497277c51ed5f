package advance

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Option changes an Advancer, a Router or a Reconciler.
type Option func(*options) error

type options struct {
	log      *slog.Logger     // default: discard
	metrics  *metrics.Metrics // default metrics.Discard()
	interval time.Duration    // Reconciler only; default DefaultReconcileInterval
}

func newOptions(opts []Option) (options, error) {
	o := options{log: slog.New(slog.DiscardHandler), metrics: metrics.Discard(), interval: DefaultReconcileInterval}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	return o, nil
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMetrics records step retries and the revisions per phase; the default is a private
// registry nobody scrapes.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithInterval is how often a Reconciler lists the staging repositories and resumes
// unfinished revisions (config reconcileInterval); the default is
// DefaultReconcileInterval.
func WithInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("reconcile interval must be positive, got %s", d)
		}
		o.interval = d
		return nil
	}
}
