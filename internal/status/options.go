package status

import (
	"errors"
	"log/slog"
	"time"

	"github.com/promoter-dev/promoter/internal/types"
)

// Option configures NewHandler.
type Option func(*options) error

type options struct {
	pipelines []PipelineInfo
	keepAlive time.Duration
	log       *slog.Logger
}

// DefaultKeepAlive is how often GET /v1/watch sends a comment on an idle stream, so that
// proxies (kubectl port-forward among them) keep it open and the server's write deadline
// is pushed back.
const DefaultKeepAlive = 15 * time.Second

// WithPipelines lists the configured pipelines on GET /v1/pipelines (the page's pipeline
// filter). Default: none.
func WithPipelines(ps []types.Pipeline) Option {
	return func(o *options) error {
		o.pipelines = make([]PipelineInfo, 0, len(ps))
		for _, p := range ps {
			info := PipelineInfo{Name: p.Name, Staging: string(p.Staging), Sign: p.Sign, Destinations: p.Destinations()}
			for _, pl := range p.Platforms {
				info.Platforms = append(info.Platforms, pl.String())
			}
			o.pipelines = append(o.pipelines, info)
		}
		return nil
	}
}

// WithKeepAlive sets how often an idle watch stream gets a keep-alive comment. Default
// DefaultKeepAlive.
func WithKeepAlive(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("status: keep-alive interval must be positive")
		}
		o.keepAlive = d
		return nil
	}
}

// WithLogger sets the logger of the watch streams. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("status: nil logger")
		}
		o.log = l
		return nil
	}
}

func newOptions(opts []Option) (*options, error) {
	o := &options{keepAlive: DefaultKeepAlive, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}
