package testenv

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage driver registration
	"github.com/sirupsen/logrus"
)

// Registry is a real distribution/distribution v3 registry served on a loopback port.
type Registry struct {
	// Host is "127.0.0.1:PORT", usable in image references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL    string
	Server *httptest.Server
}

// RegistryOption changes how a test registry is configured.
type RegistryOption func(*configuration.Configuration)

// WithNotifications sends the registry's event notifications to url with the given headers
// (for example Authorization), ignoring pulls and blob pushes as the README tells users to.
func WithNotifications(url string, headers http.Header) RegistryOption {
	return func(c *configuration.Configuration) {
		c.Notifications.Endpoints = append(c.Notifications.Endpoints, configuration.Endpoint{
			Name:      "promoter",
			URL:       url,
			Headers:   headers,
			Timeout:   5 * time.Second,
			Threshold: 5,
			Backoff:   100 * time.Millisecond,
			Ignore: configuration.Ignore{
				Actions:    []string{"pull"},
				MediaTypes: []string{"application/octet-stream"},
			},
		})
	}
}

// WithAllNotifications sends every event, pulls and blob pushes included, to url. Tests of
// the receiver's filtering use it.
func WithAllNotifications(url string, headers http.Header) RegistryOption {
	return func(c *configuration.Configuration) {
		c.Notifications.Endpoints = append(c.Notifications.Endpoints, configuration.Endpoint{
			Name: "promoter-all", URL: url, Headers: headers,
			Timeout: 5 * time.Second, Threshold: 5, Backoff: 100 * time.Millisecond,
		})
	}
}

var quietLogrus sync.Once

// StartRegistry starts a registry with filesystem storage in a temporary directory. It is
// stopped when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	quietLogrus.Do(func() {
		// handlers.NewApp logs through logrus' standard logger.
		logrus.SetLevel(logrus.ErrorLevel)
		logrus.SetOutput(io.Discard)
	})
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": t.TempDir()},
			"delete":     configuration.Parameters{"enabled": true},
		},
	}
	cfg.HTTP.Secret = "promoter-test-secret"
	cfg.Log.Level = "error"
	for _, o := range opts {
		o(cfg)
	}
	app := handlers.NewApp(context.Background(), cfg)
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatalf("parsing registry URL: %v", err)
	}
	return &Registry{Host: u.Host, URL: srv.URL, Server: srv}
}
