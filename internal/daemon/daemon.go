package daemon

import (
	"context"
	"fmt"
	"net/http"

	"github.com/promoter-dev/promoter/internal/bus"
	"github.com/promoter-dev/promoter/internal/config"
)

// daemon is one running instance: configuration, options and the bus.
type daemon struct {
	cfg *config.Config
	o   *options
	bus *bus.Bus
}

func (d *daemon) readyz(w http.ResponseWriter, r *http.Request) {
	if err := d.bus.Ready(r.Context()); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// routes registers the webhook receivers.
func (d *daemon) routes(mux *http.ServeMux) error {
	d.statusRoutes(mux)
	return nil
}

// runWorkers runs the bus consumers until ctx ends.
func (d *daemon) runWorkers(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
