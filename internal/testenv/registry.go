package testenv

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd" // access controller registration
	"golang.org/x/crypto/bcrypt"

	"github.com/promoter-dev/promoter/internal/devenv"
)

// Registry is a real distribution/distribution v3 registry served on a loopback port.
type Registry struct {
	// Host is "127.0.0.1:PORT", usable in image references.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string
	// Dir is the filesystem storage root.
	Dir string
}

// RegistryOption changes how a test registry is configured.
type RegistryOption = devenv.RegistryOption

// WithNotifications sends the registry's event notifications to url with the given headers
// (for example Authorization), ignoring pulls and blob pushes as the README tells users to.
func WithNotifications(url string, headers http.Header) RegistryOption {
	return devenv.Notify(url, headers)
}

// WithAllNotifications sends every event, pulls and blob pushes included, to url. Tests of
// the receiver's filtering use it.
func WithAllNotifications(url string, headers http.Header) RegistryOption {
	return devenv.NotifyAll(url, headers)
}

// WithBasicAuth makes the registry require user and password (distribution's htpasswd
// access controller) for every request, pulls included.
func WithBasicAuth(t testing.TB, user, password string) RegistryOption {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *configuration.Configuration) {
		c.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "promoter-test", "path": path}}
	}
}

// StartRegistry starts a registry with filesystem storage in a temporary directory. It is
// stopped when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	return StartRegistryAt(t, t.TempDir(), 0, opts...)
}

// StartRegistryAt starts a registry storing in dir on the given port (0 picks one). A test
// that restarts a registry passes the same dir and port again after Close.
func StartRegistryAt(t testing.TB, dir string, port int, opts ...RegistryOption) *Registry {
	t.Helper()
	r, err := devenv.StartRegistry(context.Background(), dir, port, opts...)
	if err != nil {
		Require(t, "starting registry: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return &Registry{Host: r.Host, URL: r.URL, Dir: dir}
}
