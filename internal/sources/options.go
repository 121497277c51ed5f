package sources

import (
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// MinInterval is the shortest source.poll the configuration accepts: every poll is a
// request to the git server per pipeline and per daemon replica, and forges rate-limit
// them. A Poller itself takes any positive interval (tests poll faster).
const MinInterval = 10 * time.Second

// DefaultTimeout bounds one listing of a branch (`git ls-remote`) unless WithTimeout says
// otherwise: a server that does not answer in 30 s fails the poll, which is tried again at
// the next interval.
const DefaultTimeout = 30 * time.Second

// Option changes a Poller.
type Option func(*options) error

type options struct {
	log     *slog.Logger      // default: discard
	metrics *metrics.Metrics  // default: metrics.Discard()
	timeout time.Duration     // default: DefaultTimeout
	tokens  map[string]string // pipeline → token; default: none
	now     func() time.Time  // default: time.Now
}

func newOptions(opts []Option) (options, error) {
	o := options{
		log: slog.New(slog.DiscardHandler), metrics: metrics.Discard(), timeout: DefaultTimeout,
		tokens: map[string]string{}, now: time.Now,
	}
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

// WithMetrics counts polls by outcome (promoter_source_polls_total); the default is a
// private registry nobody scrapes.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithTimeout bounds one listing of a branch (`git ls-remote`), connecting and
// authenticating included; the default is DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return ruleErrorf(ErrConfig, "git ls-remote timeout must be positive, got %s", d)
		}
		o.timeout = d
		return nil
	}
}

// WithToken authenticates the polls of pipeline's http(s) repository with token (config
// source.pollToken), sent as HTTP basic auth x-access-token:<token>, as BuildKit sends
// build.gitSecret's token; GitHub, GitLab and Gitea/Forgejo accept access tokens so. It is
// sent to the repository's origin only (not after a redirect elsewhere), and never leaves
// the daemon's process otherwise: no program runs with it. The default is no token: the
// repository must be public to the daemon.
func WithToken(pipeline, token string) Option {
	return func(o *options) error {
		if token == "" {
			return ruleErrorf(ErrConfig, "a source token must not be empty")
		}
		o.tokens[pipeline] = token
		return nil
	}
}

// WithClock sets the time source of SourceChanged.Received; the default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error { o.now = now; return nil }
}
