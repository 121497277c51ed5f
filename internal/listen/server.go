package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/promoter-dev/promoter/internal/metrics"
)

// Server is one HTTP listener with promoter's timeouts and limits.
type Server struct {
	name    string
	lis     net.Listener
	srv     *http.Server
	limits  Limits
	conns   *Conns
	log     *slog.Logger
	metrics *metrics.Metrics
}

// New serves h on lis, under the name of the listener (webhook, status, metrics: a
// metric label and a log key). It does not start serving: call Serve.
func New(name string, lis net.Listener, h http.Handler, opts ...Option) (*Server, error) {
	o := &options{}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	limits, err := o.limits.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", name, err)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.metrics == nil {
		o.metrics = metrics.Discard()
	}
	if o.conns == nil {
		o.conns = NewConns(0, o.log, o.metrics)
	}
	if limits.MaxConnsPerClient == 0 {
		limits.MaxConnsPerClient = DefaultMaxConnsPerClient(o.conns.Max())
	}
	s := &Server{name: name, limits: limits, conns: o.conns, log: o.log, metrics: o.metrics}
	s.lis = &listener{Listener: lis, name: name, cs: o.conns, perClient: limits.MaxConnsPerClient}
	a := &admission{s: s, slots: make(chan struct{}, limits.MaxInFlight), maxBody: limits.MaxBodyBytes, probes: map[string]bool{}}
	for _, p := range o.probes {
		a.probes[p] = true
	}
	s.srv = &http.Server{
		Handler:           a.wrap(h),
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
		ConnState:         o.conns.track,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*conn); ok {
				return withConn(ctx, tc)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(o.log.With("listener", name).Handler(), slog.LevelWarn),
	}
	for _, f := range o.onShutdown {
		s.srv.RegisterOnShutdown(f)
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Limits are the limits in force, defaults filled in.
func (s *Server) Limits() Limits { return s.limits }

// Serve serves until Shutdown and returns nil then; any other end is an error.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s on %s: %w", s.name, s.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends, then closes.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down %s: %w", s.name, err)
	}
	return nil
}
