package builders

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Option changes a Dispatcher, Agent or executor. Options that do not concern the value
// being built are ignored by it.
type Option func(*options) error

// DefaultMaxAttempts is how often a build is tried before its revision fails
// (WithMaxAttempts, config builder.maxAttempts).
const DefaultMaxAttempts = 3

type options struct {
	log         *slog.Logger     // default: discard
	metrics     *metrics.Metrics // default: metrics.Discard()
	maxAttempts int              // default: DefaultMaxAttempts
	ackWait     time.Duration    // default: 30s
	retryDelay  time.Duration    // default: 15s, doubled per attempt, at most 5m
	concurrency int              // default: 2 builds at once per platform
	records     Records          // default: none, so no existing arch tag is trusted
	policies    map[string]Policy
}

func newOptions(opts []Option) (*options, error) {
	o := &options{
		log:         slog.New(slog.DiscardHandler),
		maxAttempts: DefaultMaxAttempts,
		ackWait:     30 * time.Second,
		retryDelay:  15 * time.Second,
		concurrency: 2,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.metrics == nil {
		o.metrics = metrics.Discard()
	}
	return o, nil
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithMetrics sets the collectors; the default is a private registry nobody scrapes.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithMaxAttempts is how often the agent tries a build before publishing a Final failed
// result (builder.maxAttempts); the default is 3.
func WithMaxAttempts(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("max attempts must be at least 1, got %d", n)
		}
		o.maxAttempts = n
		return nil
	}
}

// WithAckWait is how long a build request may go without a heartbeat before NATS
// redelivers it to another agent; the agent heartbeats every third of it while a build
// runs. The default is 30s.
func WithAckWait(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second {
			return fmt.Errorf("ack wait must be at least 1s, got %s", d)
		}
		o.ackWait = d
		return nil
	}
}

// WithRetryDelay is the delay before the second attempt of a failed build; it doubles for
// each further attempt, up to 5 minutes. The default is 15s.
func WithRetryDelay(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("retry delay must not be negative, got %s", d)
		}
		o.retryDelay = d
		return nil
	}
}

// WithConcurrency is how many builds of one platform one agent runs at once; the default
// is 2.
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("concurrency must be at least 1, got %d", n)
		}
		o.concurrency = n
		return nil
	}
}

// WithRecords lets the dispatcher read the revision state (state.Store), so that an arch
// tag holding what promoter's own build reported is not built again. Without it every
// existing arch tag the policy does not accept is built over.
func WithRecords(r Records) Option {
	return func(o *options) error { o.records = r; return nil }
}

// WithPolicies are the pipelines' verify policies by pipeline name: an existing arch tag
// whose image a policy accepts is not built again. The default is none.
func WithPolicies(policies map[string]Policy) Option {
	return func(o *options) error { o.policies = policies; return nil }
}
