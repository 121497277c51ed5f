package events

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/promoter-dev/promoter/internal/bus"

	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/types"
)

// Secrets are the resolved webhook secrets, by receiver (Endpoint.Name: "registry",
// "github", ...); a receiver without one is disabled.
type Secrets map[string]string

// The errors of New, for callers to tell apart with errors.Is.
var (
	// ErrNoPublisher is New without a publisher (the bus).
	ErrNoPublisher = errors.New("events receiver: a publisher (the bus) is required")
	// ErrInvalidOption is an option given a value it cannot take.
	ErrInvalidOption = errors.New("invalid option")
	// ErrUnknownReceiver is a secret for a name no receiver of Receivers has.
	ErrUnknownReceiver = errors.New("no such receiver")
)

// Option changes a Receiver.
type Option func(*Receiver) error

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(r *Receiver) error { r.log = l; return nil } }

// WithMetrics sets the collectors (default: metrics.Discard()).
func WithMetrics(m *metrics.Metrics) Option {
	return func(r *Receiver) error { r.metrics = m; return nil }
}

// DefaultMaxBodyBytes bounds request bodies unless WithMaxBodyBytes (config
// events.maxBodyBytes) says otherwise: 1 MiB, far above any registry's or forge's event.
const DefaultMaxBodyBytes int64 = 1 << 20

// WithMaxBodyBytes bounds request bodies (default DefaultMaxBodyBytes); larger ones get 413.
func WithMaxBodyBytes(n int64) Option {
	return func(r *Receiver) error {
		if n <= 0 {
			return fmt.Errorf("%w: max body bytes must be positive, got %d", ErrInvalidOption, n)
		}
		r.maxBody = n
		return nil
	}
}

// WithInsecureNoAuth accepts distribution's registry notifications without a token while
// auth.registryToken is unset (auth.insecureNoAuth; default false). Development only.
func WithInsecureNoAuth(on bool) Option {
	return func(r *Receiver) error { r.insecureNoAuth = on; return nil }
}

// WithClock sets the time source for received timestamps (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(r *Receiver) error { r.now = now; return nil }
}

// Receiver serves the webhook endpoints.
type Receiver struct {
	pipelines []pipeline
	secrets   Secrets
	pub       bus.Publisher
	log       *slog.Logger
	metrics   *metrics.Metrics
	maxBody   int64
	now       func() time.Time
	// ignoredLog rate-limits the "event ignored" lines (logIgnored).
	ignoredLog logLimit

	// insecureNoAuth: WithInsecureNoAuth.
	insecureNoAuth bool
}

// New builds a receiver for the given pipelines (from a validated configuration), with
// the secrets of the receivers to enable.
func New(pipelines []types.Pipeline, secrets Secrets, pub bus.Publisher, opts ...Option) (*Receiver, error) {
	if pub == nil {
		// Without it every kept event would panic mid-request instead of failing here.
		return nil, ErrNoPublisher
	}
	for name := range secrets {
		if _, ok := endpoint(name); !ok {
			// A misspelt name would leave the receiver it meant disabled, silently.
			return nil, fmt.Errorf("events receiver: a secret for %q: %w", name, ErrUnknownReceiver)
		}
	}
	r := &Receiver{
		secrets: secrets,
		pub:     pub,
		log:     slog.New(slog.DiscardHandler),
		metrics: metrics.Discard(),
		maxBody: DefaultMaxBodyBytes,
		now:     time.Now,
	}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	for _, p := range pipelines {
		r.pipelines = append(r.pipelines, newPipeline(p))
	}
	return r, nil
}

// endpoint finds the receiver named name in Receivers.
func endpoint(name string) (Endpoint, bool) {
	for _, e := range Receivers {
		if e.Name == name {
			return e, true
		}
	}
	return Endpoint{}, false
}

// Register mounts every receiver of Receivers on mux.
func (r *Receiver) Register(mux *http.ServeMux) {
	for _, e := range Receivers {
		mux.HandleFunc("POST "+e.Path, r.counted(e.Name, e.handler(r)))
		if e.validation != "" {
			mux.HandleFunc("OPTIONS "+e.Path, r.counted(e.Name, r.webhookValidation(r.secrets[e.Name], e.SecretKey, e.validation)))
		}
	}
}

// counted counts every answer of h under source and its status code
// (promoter_events_responses_total).
func (r *Receiver) counted(source string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, req)
		r.metrics.EventResponses.WithLabelValues(source, strconv.Itoa(rec.status())).Inc()
	}
}

// statusRecorder remembers the status code a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// status is the code sent; a handler that wrote nothing answered 200.
func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// serverWriter is the server's own writer under a statusRecorder: http.MaxBytesReader
// closes the connection after a too-large body only when it is given that one.
func serverWriter(w http.ResponseWriter) http.ResponseWriter {
	if s, ok := w.(*statusRecorder); ok {
		return s.ResponseWriter
	}
	return w
}
