package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/promoter-dev/promoter/internal/advance"
	"github.com/promoter-dev/promoter/internal/builders"
	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/listen"
	"github.com/promoter-dev/promoter/internal/merge"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/promote"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/types"
)

// shutdownGrace bounds how long in-flight requests may take after a stop signal.
const shutdownGrace = 4 * time.Second

// Run runs the daemon until ctx ends, then shuts down gracefully; it returns nil on a clean
// stop. It is Start, then Wait.
func Run(ctx context.Context, cfg *config.Config, opts ...Option) error {
	d, err := Start(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	return d.Wait()
}

// Start checks cfg (config validation, keys, secrets), opens the listeners and the bus, and
// starts the webhook receivers, the status API, the metrics server and the workers, all
// supervised together: the first to fail stops the rest. It returns once the listeners are
// open, with the addresses they are bound to; the daemon reports ready on /readyz once the
// bus is. Everything a user can get wrong fails here, before any port answers.
func Start(ctx context.Context, cfg *config.Config, opts ...Option) (*Daemon, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.registry.Insecure == nil && !o.registry.InsecureAll {
		o.registry.Insecure = cfg.InsecureHosts()
	}
	// Every component talks to the same few repositories all day: authenticate to each
	// once (per registry.DefaultReuseTTL), not on every request.
	o.registry = o.registry.Reusing(0)
	if err := checkAuth(cfg, o.log); err != nil {
		return nil, err
	}
	signer, promoter, err := newSteps(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	statusToken, err := secret("auth.statusToken", cfg.Auth.StatusToken)
	if err != nil {
		return nil, err
	}
	secrets, err := webhookSecrets(cfg.Auth)
	if err != nil {
		return nil, err
	}
	pipelines := cfg.DomainPipelines()
	verify, err := loadPolicies(ctx, pipelines, o.registry, o.log)
	if err != nil {
		return nil, err
	}
	pollOpts, err := pollTokens(cfg.Pipelines)
	if err != nil {
		return nil, err
	}
	// Listen first so a port conflict fails before anything else starts.
	lis, err := openListeners(cfg)
	if err != nil {
		return nil, err
	}
	b, err := bus.Open(ctx,
		bus.WithURL(cfg.NATS.URL), bus.WithCredentials(cfg.NATS.Credentials), bus.WithStoreDir(cfg.DataDir),
		bus.WithReplicas(cfg.NATS.Replicas), bus.WithName("promoter-daemon"), bus.WithLogger(o.log),
	)
	if err != nil {
		lis.close()
		return nil, err
	}
	o.metrics.ObserveBus(b.Ready) // promoter_bus_ready, checked at each scrape
	poller, err := sources.New(b, pipelines,
		append([]sources.Option{sources.WithLogger(o.log), sources.WithMetrics(o.metrics)}, pollOpts...)...)
	if err != nil {
		lis.close()
		closeBus(b, o.log)
		return nil, err
	}
	revs := &revisions{}
	w := &workers{cfg: cfg, o: o, bus: b, pipelines: pipelines, revs: revs, signer: signer, promoter: promoter, poller: poller, verify: verify}
	servers, maxConns, err := newServers(cfg, o, lis, b, pipelines, secrets, revs, statusToken)
	if err != nil {
		lis.close()
		closeBus(b, o.log)
		return nil, err
	}

	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(s.Serve)
	}
	g.Go(func() error { return w.run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		return shutdown(servers)
	})
	d := &Daemon{addrs: lis.addrs(), cancel: cancel, done: make(chan struct{})}
	o.log.Info("promoter serving", "listen", d.addrs.Listen, "metrics", d.addrs.Metrics, "status", d.addrs.Status,
		"status_auth", statusToken != "", "max_conns", maxConns, "max_conns_per_client", servers[0].Limits().MaxConnsPerClient,
		"nats", natsDesc(cfg), "pipelines", len(pipelines), "polled", poller.Pipelines())
	go func() {
		err := g.Wait()
		closeBus(b, o.log)
		if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
			o.log.Info("promoter stopped")
			err = nil
		}
		cancel()
		d.err = err
		close(d.done)
	}()
	return d, nil
}

// newServers builds the webhook server (receivers, /healthz, /readyz), the ops server
// (/metrics, /healthz, /readyz) and the status server (the status page and API) on the
// open listeners; a
// disabled listener gets none. They share one connection budget, below the open-file
// limit, whose size is returned.
func newServers(cfg *config.Config, o *options, lis *listeners, b *bus.Bus, pipelines []types.Pipeline,
	secrets events.Secrets, revs *revisions, statusToken string) ([]*listen.Server, int, error) {
	rcv, err := events.New(pipelines, secrets, b, events.WithInsecureNoAuth(cfg.Auth.InsecureNoAuth),
		events.WithLogger(o.log), events.WithMetrics(o.metrics), events.WithMaxBodyBytes(cfg.Events.MaxBodyBytes))
	if err != nil {
		return nil, 0, err
	}
	webhooks := http.NewServeMux()
	webhooks.HandleFunc("GET /healthz", healthz)
	webhooks.Handle("GET /readyz", readyz(b))
	rcv.Register(webhooks)
	conns := listen.NewConns(cfg.Server.MaxConns, o.log, o.metrics)
	common := []listen.Option{
		listen.WithLimits(cfg.Server.Limits(cfg.Events.MaxBodyBytes)), listen.WithConns(conns),
		listen.WithLogger(o.log), listen.WithMetrics(o.metrics),
	}
	statusAPI, err := status.NewHandler(revs, statusToken, status.WithPipelines(pipelines), status.WithLogger(o.log))
	if err != nil {
		return nil, 0, err
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
	err = errors.Join(
		add("webhook", lis.webhook, webhooks, listen.WithProbes("/healthz", "/readyz")),
		add("metrics", lis.metrics, opsHandler(o.metrics, b, cfg.Pprof), listen.WithProbes("/healthz", "/readyz")),
		add("status", lis.status, statusAPI, listen.WithOnShutdown(statusAPI.Close)),
	)
	return servers, conns.Max(), err
}

// opsHandler is the ops server of `promoter serve` and `promoter builder` alike: the
// binary's one metrics registry, /healthz, /readyz (the bus is usable) and, with
// withPprof (the key pprof), the runtime profiles under /debug/pprof/.
func opsHandler(m *metrics.Metrics, b *bus.Bus, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /readyz", readyz(b))
	if withPprof {
		// Index serves the named profiles (heap, goroutine, allocs, ...) under the prefix.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// shutdown stops the servers, letting in-flight requests finish within shutdownGrace.
func shutdown(servers []*listen.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

func closeBus(b *bus.Bus, log *slog.Logger) {
	if err := b.Close(); err != nil {
		log.Warn("draining nats", "error", err)
	}
}

// workers are the daemon's bus consumers, its reconciler, its source poller and, for
// pipelines built with the local executor, an in-process builder agent. They start once
// the bus is ready, since the KV bucket they share is created then.
type workers struct {
	cfg       *config.Config
	o         *options
	bus       *bus.Bus
	pipelines []types.Pipeline
	revs      *revisions
	signer    *sign.Signer // nil when no pipeline signs
	promoter  *promote.Promoter
	// verify are the pipelines' verify policies: the evidence for arch images no build of
	// promoter's pushed.
	verify policies
	// poller polls the pipelines with source.poll. Every replica polls: its finds are
	// de-duplicated with the webhooks' and each other's (types.SourceChanged.MsgID).
	poller *sources.Poller
}

func (w *workers) run(ctx context.Context) error {
	if err := w.bus.WaitReady(ctx); err != nil {
		return nil // stopped before the bus came up
	}
	kv, err := w.bus.Revisions()
	if err != nil {
		return err
	}
	store := state.New(kv)
	w.revs.store.Store(store)
	o := w.o
	disp, err := builders.NewDispatcher(w.bus, o.registry, w.pipelines,
		builders.WithLogger(o.log), builders.WithMetrics(o.metrics), builders.WithRecords(store),
		builders.WithPolicies(byPipeline(w.verify, func(p *sign.Policy) builders.Policy { return p })))
	if err != nil {
		return err
	}
	merger, err := merge.New(store, o.registry, w.pipelines,
		merge.WithMetrics(o.metrics), merge.WithLogger(o.log), merge.WithOwner(instanceID()),
		merge.WithBuildWait(max(w.cfg.Builder.Deadline, time.Minute)), merge.WithPolicies(byPipeline(w.verify, func(p *sign.Policy) merge.Policy { return p })))
	if err != nil {
		return err
	}
	var signer advance.Signer
	if w.signer != nil {
		signer = w.signer
	}
	common := []advance.Option{advance.WithLogger(o.log), advance.WithMetrics(o.metrics)}
	adv, err := advance.New(store, w.bus, w.pipelines, signer, w.promoter, common...)
	if err != nil {
		return err
	}
	router, err := advance.NewRouter(store, adv, merger, disp, common...)
	if err != nil {
		return err
	}
	rec, err := advance.NewReconciler(adv, merger, append(common, advance.WithInterval(w.cfg.ReconcileInterval))...)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	// A step is bounded by promote.timeout itself; the handler's bound leaves it room.
	for _, c := range router.Consumers(w.cfg.Promote.Timeout + time.Minute) {
		g.Go(func() error { return w.bus.Consume(gctx, c) })
	}
	g.Go(func() error { return rec.Run(gctx) })
	g.Go(func() error { return w.poller.Run(gctx) })
	if agent, err := w.localAgent(); err != nil {
		return err
	} else if agent != nil {
		g.Go(func() error { return agent.Run(gctx) })
	}
	return g.Wait()
}

// localAgent is the in-process builder agent of pipelines built with the local executor
// (development and `promoter dev`), or nil when there are none. Config validation refuses
// a platform built locally by one pipeline and with Kubernetes by another.
func (w *workers) localAgent() (*builders.Agent, error) {
	var local []types.Pipeline
	var platforms []types.Platform
	seen := map[string]bool{}
	for _, p := range w.pipelines {
		if p.Build.Executor != types.ExecutorLocal {
			continue
		}
		local = append(local, p)
		for _, pl := range p.Platforms {
			if !seen[pl.String()] {
				seen[pl.String()] = true
				platforms = append(platforms, pl)
			}
		}
	}
	if len(local) == 0 {
		return nil, nil
	}
	exec, err := builders.NewLocal(w.o.registry, local, builders.WithLogger(w.o.log))
	if err != nil {
		return nil, err
	}
	types.SortPlatforms(platforms)
	return builders.NewAgent(w.bus, exec, platforms,
		builders.WithLogger(w.o.log), builders.WithMetrics(w.o.metrics), builders.WithMaxAttempts(max(w.cfg.Builder.MaxAttempts, 1)))
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
func checkAuth(cfg *config.Config, log *slog.Logger) error {
	var others []string
	for _, e := range events.Receivers {
		if !e.Registry {
			continue
		}
		if token, _ := cfg.Auth.Secret(e.SecretKey); token.IsSet() {
			return nil // at least one registry receiver is authenticated; the others are disabled
		}
		if e.SecretKey != "auth.registryToken" {
			others = append(others, e.SecretKey)
		}
	}
	if !cfg.Auth.InsecureNoAuth {
		return fmt.Errorf("auth.registryToken is not set: registry notifications would be accepted from anyone; set it (e.g. registryToken: env:PROMOTER_REGISTRY_TOKEN), or the token of the receiver your registry uses (%s), or pass --insecure-no-auth for development", strings.Join(others, ", "))
	}
	log.Warn("INSECURE: registry notifications are accepted without authentication (--insecure-no-auth)")
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
