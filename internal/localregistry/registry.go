package localregistry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // access controller registration
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage driver registration
	"github.com/sirupsen/logrus"
)

// htpasswdFile is the name, under the registry's dir, of the htpasswd file WithBasicAuth
// writes. It sits beside the storage driver's docker/ tree, never inside it, so it is not
// mistaken for repository data.
const htpasswdFile = "htpasswd"

// Registry is a distribution/distribution v3 registry served on a loopback port.
type Registry struct {
	// Host is "127.0.0.1:PORT" (or WithListener's address), usable in image references.
	Host string
	// URL is "http://" + Host.
	URL string
	// Dir is the filesystem storage root; the registry's data is under Dir/docker.
	Dir string

	srv *http.Server
}

// quietLogrus guards the one process-wide change Start makes; see the package doc.
var quietLogrus sync.Once

// Start serves a registry storing under dir on 127.0.0.1 until Close. A registry started
// again on the same dir (and port, see WithPort) serves what the previous one stored.
func Start(ctx context.Context, dir string, opts ...Option) (*Registry, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err // already says it is an invalid registry option
		}
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: storage dir is empty", ErrInvalidOption)
	}
	quietLogrus.Do(func() {
		// Global on purpose: distribution logs only through logrus' standard logger (its
		// dcontext package is internal, so there is nothing per-registry to inject), and its
		// access logs are noise in `promoter dev` and in tests. Only dev and tests get here.
		logrus.SetLevel(logrus.ErrorLevel)
		logrus.SetOutput(io.Discard)
	})
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
		},
	}
	// Fixed, so a restarted registry accepts upload state its predecessor signed.
	cfg.HTTP.Secret = "promoter-localregistry"
	cfg.Log.Level = "error"
	cfg.Notifications.Endpoints = o.endpoints
	if o.htpasswd != "" {
		// Written before handlers.NewApp: distribution's access controller creates a file
		// with a random default user when the path does not exist yet.
		path := filepath.Join(dir, htpasswdFile)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("registry storage dir: %w", err)
		}
		if err := os.WriteFile(path, []byte(o.htpasswd), 0o600); err != nil {
			return nil, fmt.Errorf("writing registry htpasswd: %w", err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "promoter-localregistry", "path": path}}
	}
	lis := o.listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.port)); err != nil {
			return nil, fmt.Errorf("registry listen: %w", err)
		}
	} else if o.port != 0 {
		return nil, fmt.Errorf("%w: WithListener and WithPort both given", ErrInvalidOption)
	}
	app := handlers.NewApp(ctx, cfg)
	r := &Registry{
		Host: lis.Addr().String(),
		URL:  "http://" + lis.Addr().String(),
		Dir:  dir,
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
