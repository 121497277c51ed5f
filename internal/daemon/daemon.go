package daemon

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/sources"
	"github.com/promoter-dev/promoter/internal/state"
	"github.com/promoter-dev/promoter/internal/types"
)

// Daemon is a started daemon (Start): its listeners are open and its components run until
// the context given to Start ends or Stop is called.
type Daemon struct {
	addrs  Addrs
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Addrs are the addresses the daemon listens on; a disabled listener's is empty.
type Addrs struct {
	Listen  string // webhooks, /healthz, /readyz
	Metrics string // /metrics
	Status  string // /v1/revisions
}

// Addrs are the bound addresses; with ":0" in the configuration, the ports chosen.
func (d *Daemon) Addrs() Addrs { return d.addrs }

// Wait blocks until the daemon has stopped and returns why: nil after a clean stop (its
// context ended, or Stop), else the error that stopped it.
func (d *Daemon) Wait() error {
	<-d.done
	return d.err
}

// Stop stops the daemon gracefully (listeners close, in-flight requests finish, consumers
// stop, the bus drains) and waits for it, as Wait.
func (d *Daemon) Stop() error {
	d.cancel()
	return d.Wait()
}

// revisions is the daemon's one revision store, shared by its components and the status
// API. The KV bucket exists only once the bus is ready, so it is set then; until then the
// status API answers that the state is unavailable.
type revisions struct {
	store atomic.Pointer[state.Store]
}

func (r *revisions) ready() (*state.Store, error) {
	if s := r.store.Load(); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: the revision state is not open yet", bus.ErrNotReady)
}

func (r *revisions) Get(ctx context.Context, pipeline, revision string) (*types.Revision, error) {
	s, err := r.ready()
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, pipeline, revision)
}

func (r *revisions) Watch(ctx context.Context, pipeline string) (<-chan *types.Revision, error) {
	s, err := r.ready()
	if err != nil {
		return nil, err
	}
	return s.Watch(ctx, pipeline)
}

func (r *revisions) Page(ctx context.Context, q state.Query) ([]*types.Revision, string, error) {
	s, err := r.ready()
	if err != nil {
		return nil, "", err
	}
	return s.Page(ctx, q)
}

// readyz answers 200 once the bus (NATS, streams, KV bucket) is usable.
func readyz(b *bus.Bus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := b.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}
}

func healthz(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }

// webhookSecrets resolves the secret of every webhook receiver (events.Receivers) the
// configuration sets.
func webhookSecrets(a config.Auth) (events.Secrets, error) {
	s := events.Secrets{}
	for _, e := range events.Receivers {
		ref, _ := a.Secret(e.SecretKey) // config validation checked every receiver's key
		v, err := secret(e.SecretKey, ref)
		if err != nil {
			return nil, err
		}
		if v != "" {
			s[e.Name] = v
		}
	}
	return s, nil
}

// pollTokens are the source poller's tokens (source.pollToken), one option per pipeline
// that has one.
func pollTokens(pipelines []config.Pipeline) ([]sources.Option, error) {
	var opts []sources.Option
	for i, p := range pipelines {
		v, err := secret(fmt.Sprintf("pipelines[%d].source.pollToken", i), p.Source.PollToken)
		if err != nil {
			return nil, err
		}
		if v != "" {
			opts = append(opts, sources.WithToken(p.Name, v))
		}
	}
	return opts, nil
}

// secret resolves an optional secret reference; unset is "".
func secret(key string, ref config.Secret) (string, error) {
	if !ref.IsSet() {
		return "", nil
	}
	v, err := ref.Resolve()
	if err != nil {
		return "", fmt.Errorf("%s (%s): %w", key, ref, err)
	}
	return v, nil
}
