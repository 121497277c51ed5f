package daemon

import (
	"fmt"
	"net/http"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/types"
)

// daemon is one running instance: configuration, options and the bus.
type daemon struct {
	// instance names this process in merge leases and logs: host, pid and a random suffix.
	instance string
	cfg      *config.Config
	// pipelines are cfg's, parsed once (config.Pipeline.Domain).
	pipelines []types.Pipeline
	o         *options
	bus       *bus.Bus
	steps     *steps
}

func (d *daemon) readyz(w http.ResponseWriter, r *http.Request) {
	if err := d.bus.Ready(r.Context()); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// routes registers the webhook receivers; the status API has a listener of its own.
func (d *daemon) routes(mux *http.ServeMux) error {
	secrets, err := webhookSecrets(d.cfg.Auth)
	if err != nil {
		return err
	}
	rcv, err := events.New(d.pipelines, secrets, d.bus,
		events.WithLogger(d.o.log), events.WithMetrics(d.o.metrics), events.WithMaxBodyBytes(d.cfg.Events.MaxBodyBytes))
	if err != nil {
		return err
	}
	rcv.Register(mux)
	return nil
}

// webhookSecrets reads the webhook secret references of the configuration.
func webhookSecrets(a config.Auth) (events.Secrets, error) {
	s := events.Secrets{InsecureNoAuth: a.InsecureNoAuth}
	for _, f := range []struct {
		key string
		ref config.Secret
		dst *string
	}{
		{"auth.registryToken", a.RegistryToken, &s.RegistryToken},
		{"auth.github.secret", a.GitHub.Secret, &s.GitHubSecret},
		{"auth.gitlab.token", a.GitLab.Token, &s.GitLabToken},
		{"auth.generic.token", a.Generic.Token, &s.GenericToken},
	} {
		if !f.ref.IsSet() {
			continue
		}
		v, err := f.ref.Resolve()
		if err != nil {
			return events.Secrets{}, fmt.Errorf("%s (%s): %w", f.key, f.ref, err)
		}
		*f.dst = v
	}
	return s, nil
}

// pipeline finds a configured pipeline by name.
func (d *daemon) pipeline(name string) (types.Pipeline, bool) {
	return pipelineNamed(d.pipelines, name)
}

func pipelineNamed(ps []types.Pipeline, name string) (types.Pipeline, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p, true
		}
	}
	return types.Pipeline{}, false
}
