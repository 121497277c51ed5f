package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage driver registration
	"github.com/sirupsen/logrus"
)

// Registry is a distribution/distribution v3 registry served on a loopback port.
type Registry struct {
	// Host is "127.0.0.1:PORT", usable in image references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string

	srv *http.Server
}

// RegistryOption changes a registry's configuration.
type RegistryOption func(*configuration.Configuration)

// Notify sends the registry's events to url with the given headers (for example
// Authorization), ignoring pulls and blob pushes, as README.md tells users to configure.
func Notify(url string, headers http.Header) RegistryOption {
	return func(c *configuration.Configuration) {
		c.Notifications.Endpoints = append(c.Notifications.Endpoints, configuration.Endpoint{
			Name: fmt.Sprintf("promoter-%d", len(c.Notifications.Endpoints)), URL: url, Headers: headers,
			Timeout: 5 * time.Second, Threshold: 5, Backoff: 100 * time.Millisecond,
			Ignore: configuration.Ignore{
				Actions:    []string{"pull"},
				MediaTypes: []string{"application/octet-stream"},
			},
		})
	}
}

// NotifyAll sends every event, pulls and blob pushes included.
func NotifyAll(url string, headers http.Header) RegistryOption {
	return func(c *configuration.Configuration) {
		c.Notifications.Endpoints = append(c.Notifications.Endpoints, configuration.Endpoint{
			Name: "promoter-all", URL: url, Headers: headers,
			Timeout: 5 * time.Second, Threshold: 5, Backoff: 100 * time.Millisecond,
		})
	}
}

var quietLogrus sync.Once

// StartRegistry serves a registry storing under dir on 127.0.0.1 (port 0 picks one) until
// Close.
func StartRegistry(ctx context.Context, dir string, port int, opts ...RegistryOption) (*Registry, error) {
	quietLogrus.Do(func() {
		// handlers.NewApp logs through logrus' standard logger; its access logs are noise here.
		logrus.SetLevel(logrus.ErrorLevel)
		logrus.SetOutput(io.Discard)
	})
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
		},
	}
	cfg.HTTP.Secret = "promoter-devenv"
	cfg.Log.Level = "error"
	for _, o := range opts {
		o(cfg)
	}
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("registry listen: %w", err)
	}
	app := handlers.NewApp(ctx, cfg)
	r := &Registry{
		Host: lis.Addr().String(),
		URL:  "http://" + lis.Addr().String(),
		srv:  &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second},
	}
	go func() {
		if err := r.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("registry %s: %v", r.Host, err)
		}
	}()
	return r, nil
}

// Close stops the registry. Idle keep-alive connections of clients are not waited for:
// after a short grace for in-flight requests, the rest are closed.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		return r.srv.Close()
	}
	return nil
}
