package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"

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
	o, err := newOptions(opts)
	if err != nil {
		return err
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
	defer closeBus(b, o.log)
	o.metrics.ObserveBus(b.Ready) // promoter_bus_ready, checked at each scrape
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
		srv, err := listen.New("metrics", lis, opsHandler(o.metrics, b, cfg.Pprof), listen.WithProbes("/healthz", "/readyz"),
			listen.WithLimits(cfg.Server.Limits(0)), listen.WithConns(listen.NewConns(cfg.Server.MaxConns, o.log, o.metrics)),
			listen.WithLogger(o.log), listen.WithMetrics(o.metrics))
		if err != nil {
			closeLis()
			return err
		}
		g.Go(srv.Serve)
		g.Go(func() error {
			<-gctx.Done()
			return shutdown([]*listen.Server{srv})
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
		BuildKitConfig: b.BuildKitConfig, Deadline: b.Deadline, TTL: b.TTL, HostUsers: b.HostUsers,
	}
}
