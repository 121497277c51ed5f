package localregistry

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"golang.org/x/crypto/bcrypt"
)

// Option changes how Start configures a registry.
type Option func(*options) error

type options struct {
	port      int
	listener  net.Listener // serve here instead of on 127.0.0.1:port
	endpoints []configuration.Endpoint
	// htpasswd is one "user:bcrypt-hash" line; empty leaves the registry open.
	htpasswd string
}

// WithPort serves on 127.0.0.1:port. The default, 0, lets the kernel pick a free port; a
// caller that restarts a registry passes the port it had so references stay valid.
func WithPort(port int) Option {
	return func(o *options) error {
		if port < 0 || port > 65535 {
			return fmt.Errorf("%w: port %d is out of range", ErrInvalidOption, port)
		}
		o.port = port
		return nil
	}
}

// WithListener serves on l, for example a listener inside a network namespace (see
// testenv.Netns), instead of on 127.0.0.1. It excludes WithPort.
func WithListener(l net.Listener) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil listener", ErrInvalidOption)
		}
		o.listener = l
		return nil
	}
}

// WithNotify sends the registry's event notifications to rawURL with headers (for example
// Authorization), ignoring pulls and blob pushes, as README.md tells users to configure
// their registries. It may be given more than once; each call adds an endpoint. By default
// the registry sends no notifications.
func WithNotify(rawURL string, headers http.Header) Option {
	return func(o *options) error {
		if err := checkURL(rawURL); err != nil {
			return err
		}
		o.endpoints = append(o.endpoints, endpoint(fmt.Sprintf("promoter-%d", len(o.endpoints)), rawURL, headers,
			configuration.Ignore{
				Actions:    []string{"pull"},
				MediaTypes: []string{"application/octet-stream"},
			}))
		return nil
	}
}

// WithNotifyAll sends every event, pulls and blob pushes included, to rawURL: tests of the
// receiver's filtering need what a misconfigured registry would send.
func WithNotifyAll(rawURL string, headers http.Header) Option {
	return func(o *options) error {
		if err := checkURL(rawURL); err != nil {
			return err
		}
		o.endpoints = append(o.endpoints, endpoint("promoter-all", rawURL, headers, configuration.Ignore{}))
		return nil
	}
}

// WithBasicAuth makes the registry demand user and password for every request, pulls
// included, through distribution's htpasswd access controller. By default the registry
// accepts anonymous requests.
func WithBasicAuth(user, password string) Option {
	return func(o *options) error {
		if user == "" || strings.ContainsAny(user, ":\n") {
			return fmt.Errorf("%w: basic auth user %q must be non-empty and contain no ':' or newline", ErrInvalidOption, user)
		}
		if password == "" {
			return fmt.Errorf("%w: basic auth password is empty", ErrInvalidOption)
		}
		// MinCost: the hash protects a throwaway loopback registry, and every test that
		// authenticates pays the cost on each request.
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("%w: hashing basic auth password: %w", ErrInvalidOption, err)
		}
		o.htpasswd = user + ":" + string(hash) + "\n"
		return nil
	}
}

// endpoint is a notification endpoint with the delivery settings promoter's docs
// recommend: a short timeout and quick retries, so a restarted receiver catches up fast.
func endpoint(name, rawURL string, headers http.Header, ignore configuration.Ignore) configuration.Endpoint {
	return configuration.Endpoint{
		Name: name, URL: rawURL, Headers: headers.Clone(),
		Timeout: 5 * time.Second, Threshold: 5, Backoff: 100 * time.Millisecond,
		Ignore: ignore,
	}
}

func checkURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%w: notification url: %w", ErrInvalidOption, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: notification url %q is not an absolute http(s) URL", ErrInvalidOption, rawURL)
	}
	return nil
}
