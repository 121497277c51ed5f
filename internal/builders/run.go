package builders

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/listen"
	"github.com/promoter-dev/promoter/internal/types"
)

// RunAgent runs a builder agent for cfg until ctx ends, and returns nil on a clean stop.
// It connects to cfg.NATS (an agent never starts an embedded server: it must reach the
// daemon's), serves /metrics, /healthz and /readyz on cfg.Metrics when set, and builds
// cfg.Builder.Platforms with exec, trying each request cfg.Builder.MaxAttempts times.
// Options may override the logger, metrics and retry timing.
func RunAgent(ctx context.Context, cfg *config.Config, exec Executor, opts ...Option) error {
	if cfg.NATS.URL == "" {
		return errors.New("builder agent: nats.url (--nats-url) must name the daemon's NATS server")
	}
	var platforms []types.Platform
	for _, s := range cfg.Builder.Platforms {
		p, err := types.ParsePlatform(s)
		if err != nil {
			return fmt.Errorf("builder.platforms: %w", err)
		}
		platforms = append(platforms, p)
	}
	opts = append([]Option{WithMaxAttempts(cfg.Builder.MaxAttempts)}, opts...)
	o, err := newOptions(opts)
	if err != nil {
		return err
	}
	var lis net.Listener
	if cfg.Metrics != "" {
		if lis, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return fmt.Errorf("metrics listen %s: %w", cfg.Metrics, err)
		}
	}
	b, err := bus.Open(ctx, bus.Options{
		URL: cfg.NATS.URL, Credentials: cfg.NATS.Credentials, Replicas: cfg.NATS.Replicas,
		Name: "promoter-builder", Logger: o.log,
	})
	if err != nil {
		if lis != nil {
			lis.Close()
		}
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			o.log.Warn("draining nats", "error", err)
		}
	}()
	agent, err := NewAgent(b, exec, platforms, opts...)
	if err != nil {
		if lis != nil {
			lis.Close()
		}
		return err
	}
	if lis != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.metrics.Registry, promhttp.HandlerOpts{Registry: o.metrics.Registry}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if err := b.Ready(r.Context()); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
		srv, err := listen.New("metrics", lis, mux, listen.WithProbes("/healthz", "/readyz"),
			listen.WithLimits(cfg.Server.Limits(0)), listen.WithConns(listen.NewConns(cfg.Server.MaxConns, o.log, o.metrics)),
			listen.WithLogger(o.log), listen.WithMetrics(o.metrics))
		if err != nil {
			lis.Close()
			return err
		}
		go func() {
			if err := srv.Serve(); err != nil {
				o.log.Error("metrics server", "error", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	o.log.Info("builder agent running", "platforms", cfg.Builder.Platforms, "metrics", cfg.Metrics)
	err = agent.Run(ctx)
	o.log.Info("builder agent stopped")
	return err
}
