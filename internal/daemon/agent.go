package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/listen"
	"github.com/promoter-dev/promoter/internal/types"
)

// RunAgent runs `promoter builder` until ctx ends, and returns nil on a clean stop: a
// builder agent for cfg.Builder.Platforms that builds with exec, trying each request
// cfg.Builder.MaxAttempts times. It connects to cfg.NATS (an agent never starts an embedded
// server: it must reach the daemon's) and serves /metrics, /healthz and /readyz on
// cfg.Metrics when set, both supervised together. Options set the logger, the metrics and
// further agent options (WithAgentOptions).
func RunAgent(ctx context.Context, cfg *config.Config, exec builders.Executor, opts ...Option) error {
	o := defaults()
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return err
		}
	}
	if err := CheckAgentConfig(cfg); err != nil {
		return err
	}
	var platforms []types.Platform
	for _, s := range cfg.Builder.Platforms {
		p, err := types.ParsePlatform(s)
		if err != nil {
			return fmt.Errorf("builder.platforms: %w", err)
		}
		platforms = append(platforms, p)
	}
	var lis net.Listener
	if cfg.Metrics != "" {
		var err error
		if lis, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return fmt.Errorf("metrics listen %s: %w", cfg.Metrics, err)
		}
	}
	closeLis := func() {
		if lis != nil {
			lis.Close()
		}
	}
	b, err := bus.Open(ctx,
		bus.WithURL(cfg.NATS.URL), bus.WithCredentials(cfg.NATS.Credentials), bus.WithReplicas(cfg.NATS.Replicas),
		bus.WithName("promoter-builder"), bus.WithLogger(o.log),
	)
	if err != nil {
		closeLis()
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			o.log.Warn("draining nats", "error", err)
		}
	}()
	agentOpts := append([]builders.Option{
		builders.WithLogger(o.log), builders.WithMetrics(o.metrics), builders.WithMaxAttempts(cfg.Builder.MaxAttempts),
	}, o.agent...)
	agent, err := builders.NewAgent(b, exec, platforms, agentOpts...)
	if err != nil {
		closeLis()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
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
			closeLis()
			return err
		}
		g.Go(srv.Serve)
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	o.log.Info("builder agent running", "platforms", cfg.Builder.Platforms, "metrics", cfg.Metrics)
	g.Go(func() error { return agent.Run(gctx) })
	err = g.Wait()
	o.log.Info("builder agent stopped")
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

// CheckAgentConfig says what a builder agent's configuration lacks, naming the flag that
// sets it: platforms to build, and the daemon's NATS server.
func CheckAgentConfig(cfg *config.Config) error {
	if len(cfg.Builder.Platforms) == 0 {
		return errors.New("no platforms to build: set --platforms (or builder.platforms), e.g. --platforms linux/arm64")
	}
	if cfg.NATS.URL == "" {
		return errors.New("set --nats-url (or nats.url): the agent takes its work from the daemon's NATS server (an agent never starts one of its own)")
	}
	return nil
}

// JobSettings are the builder.* keys as the Kubernetes executor takes them.
func JobSettings(b config.Builder) builders.JobSettings {
	return builders.JobSettings{
		Namespace: b.Namespace, Image: b.Image, JobTemplate: b.JobTemplate, RegistrySecret: b.RegistrySecret,
		Deadline: b.Deadline, TTL: b.TTL, HostUsers: b.HostUsers,
	}
}
