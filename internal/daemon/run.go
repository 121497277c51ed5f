package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/listen"
)

// shutdownGrace bounds how long in-flight requests may take after a stop signal.
const shutdownGrace = 4 * time.Second

// Run runs the daemon until ctx is cancelled, then shuts down gracefully: listeners close,
// in-flight requests finish, consumers stop, the bus drains. It returns nil on a clean stop.
func Run(ctx context.Context, cfg *config.Config, opts ...Option) error {
	o := defaults()
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return err
		}
	}
	if o.registry.Insecure == nil && !o.registry.InsecureAll {
		o.registry.Insecure = cfg.InsecureHosts()
	}
	if err := checkAuth(cfg, o); err != nil {
		return err
	}
	st, err := newSteps(ctx, cfg, o)
	if err != nil {
		return err
	}
	statusToken := ""
	if cfg.Auth.StatusToken.IsSet() {
		if statusToken, err = cfg.Auth.StatusToken.Resolve(); err != nil {
			return fmt.Errorf("auth.statusToken (%s): %w", cfg.Auth.StatusToken, err)
		}
	}
	// Listen first so a port conflict fails before anything else starts.
	lis, err := openListeners(cfg)
	if err != nil {
		return err
	}

	b, err := bus.Open(ctx,
		bus.WithURL(cfg.NATS.URL), bus.WithCredentials(cfg.NATS.Credentials), bus.WithStoreDir(cfg.DataDir),
		bus.WithReplicas(cfg.NATS.Replicas), bus.WithName("promoter-daemon"), bus.WithLogger(o.log),
	)
	if err != nil {
		lis.close()
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			o.log.Warn("draining nats", "error", err)
		}
	}()

	d := &daemon{instance: instanceID(), cfg: cfg, pipelines: cfg.DomainPipelines(), o: o, bus: b, steps: st}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", d.readyz)
	if err := d.routes(mux); err != nil {
		lis.close()
		return err
	}
	// One connection budget for every listener, below the open-file limit.
	conns := listen.NewConns(cfg.Server.MaxConns, o.log, o.metrics)
	common := []listen.Option{
		listen.WithLimits(cfg.Server.Limits(cfg.Events.MaxBodyBytes)), listen.WithConns(conns),
		listen.WithLogger(o.log), listen.WithMetrics(o.metrics),
	}
	var servers []*listen.Server
	add := func(name string, l net.Listener, h http.Handler, opts ...listen.Option) error {
		if l == nil {
			return nil
		}
		s, err := listen.New(name, l, h, append(common, opts...)...)
		if err != nil {
			return err
		}
		servers = append(servers, s)
		return nil
	}
	mm := http.NewServeMux()
	mm.Handle("GET /metrics", promhttp.HandlerFor(o.metrics.Registry, promhttp.HandlerOpts{Registry: o.metrics.Registry}))
	if err := errors.Join(
		add("webhook", lis.webhook, mux, listen.WithProbes("/healthz", "/readyz")),
		add("metrics", lis.metrics, mm),
		add("status", lis.status, d.statusHandler(statusToken)),
	); err != nil {
		lis.close()
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(s.Serve)
	}
	g.Go(func() error { return d.runWorkers(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})
	addrs := lis.addrs()
	o.log.Info("promoter serving", "listen", addrs.Listen, "metrics", addrs.Metrics, "status", addrs.Status,
		"status_auth", statusToken != "", "max_conns", conns.Max(), "nats", natsDesc(cfg), "pipelines", len(cfg.Pipelines))
	if o.ready != nil {
		o.ready(addrs.Listen, addrs.Metrics)
	}
	if o.addrs != nil {
		o.addrs(addrs)
	}
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		o.log.Info("promoter stopped")
		return nil
	}
	return err
}

// listeners are the daemon's open sockets; metrics and status are nil when disabled.
type listeners struct {
	webhook, metrics, status net.Listener
}

func openListeners(cfg *config.Config) (*listeners, error) {
	l := &listeners{}
	for _, e := range []struct {
		key, addr string
		dst       *net.Listener
	}{
		{"listen", cfg.Listen, &l.webhook},
		{"metrics", cfg.Metrics, &l.metrics},
		{"status", cfg.Status, &l.status},
	} {
		if e.addr == "" {
			continue
		}
		nl, err := net.Listen("tcp", e.addr)
		if err != nil {
			l.close()
			return nil, fmt.Errorf("%s: listening on %s: %w", e.key, e.addr, err)
		}
		*e.dst = nl
	}
	return l, nil
}

func (l *listeners) close() {
	for _, nl := range []net.Listener{l.webhook, l.metrics, l.status} {
		if nl != nil {
			nl.Close()
		}
	}
}

func (l *listeners) addrs() Addrs {
	addr := func(nl net.Listener) string {
		if nl == nil {
			return ""
		}
		return nl.Addr().String()
	}
	return Addrs{Listen: addr(l.webhook), Metrics: addr(l.metrics), Status: addr(l.status)}
}

func natsDesc(cfg *config.Config) string {
	if cfg.NATS.URL == "" {
		return "embedded (" + cfg.DataDir + ")"
	}
	return "external"
}

// checkAuth refuses to serve registry notifications without a token unless the operator
// explicitly asked for it.
func checkAuth(cfg *config.Config, o *options) error {
	if cfg.Auth.RegistryToken.IsSet() {
		return nil
	}
	if !cfg.Auth.InsecureNoAuth {
		return errors.New("auth.registryToken is not set: registry notifications would be accepted from anyone; set it (e.g. registryToken: env:PROMOTER_REGISTRY_TOKEN) or pass --insecure-no-auth for development")
	}
	o.log.Warn("INSECURE: registry notifications are accepted without authentication (--insecure-no-auth)")
	return nil
}

// instanceID names this process: the host, the pid and a random suffix, so a restarted
// process never mistakes an earlier one's lease for its own.
func instanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}
