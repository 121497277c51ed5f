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
	// Listen first so a port conflict fails before anything else starts.
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	var mlis net.Listener
	if cfg.Metrics != "" {
		if mlis, err = net.Listen("tcp", cfg.Metrics); err != nil {
			lis.Close()
			return fmt.Errorf("metrics listen %s: %w", cfg.Metrics, err)
		}
	}

	b, err := bus.Open(ctx, bus.Options{
		URL: cfg.NATS.URL, Credentials: cfg.NATS.Credentials, StoreDir: cfg.DataDir,
		Replicas: cfg.NATS.Replicas, Name: "promoter-daemon", Logger: o.log,
	})
	if err != nil {
		lis.Close()
		if mlis != nil {
			mlis.Close()
		}
		return err
	}
	defer func() {
		if err := b.Close(); err != nil {
			o.log.Warn("draining nats", "error", err)
		}
	}()

	d := &daemon{instance: instanceID(), cfg: cfg, o: o, bus: b, steps: st}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", d.readyz)
	if err := d.routes(mux); err != nil {
		lis.Close()
		if mlis != nil {
			mlis.Close()
		}
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	servers := []*http.Server{srv}
	var msrv *http.Server
	if mlis != nil {
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", promhttp.HandlerFor(o.metrics.Registry, promhttp.HandlerOpts{Registry: o.metrics.Registry}))
		msrv = &http.Server{Handler: mm, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, msrv)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(srv, lis) })
	if msrv != nil {
		g.Go(func() error { return serve(msrv, mlis) })
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
	maddr := ""
	if mlis != nil {
		maddr = mlis.Addr().String()
	}
	o.log.Info("promoter serving", "listen", lis.Addr().String(), "metrics", maddr, "nats", natsDesc(cfg), "pipelines", len(cfg.Pipelines))
	if o.ready != nil {
		o.ready(lis.Addr().String(), maddr)
	}
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		o.log.Info("promoter stopped")
		return nil
	}
	return err
}

func serve(s *http.Server, l net.Listener) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
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
