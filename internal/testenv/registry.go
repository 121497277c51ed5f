package testenv

import (
	"context"
	"errors"
	"testing"

	"github.com/promoter-dev/promoter/internal/localregistry"
)

// StartRegistry starts a real distribution/distribution v3 registry (internal/localregistry)
// with filesystem storage in a temporary directory, configured by opts
// (localregistry.WithPort, WithNotify, WithBasicAuth, ...). It is stopped when the test ends.
func StartRegistry(t testing.TB, opts ...localregistry.Option) *localregistry.Registry {
	t.Helper()
	return StartRegistryAt(t, t.TempDir(), opts...)
}

// StartRegistryAt starts a registry storing in dir. A test that restarts a registry passes
// the same dir and localregistry.WithPort(port) again after Close.
func StartRegistryAt(t testing.TB, dir string, opts ...localregistry.Option) *localregistry.Registry {
	t.Helper()
	r, err := localregistry.Start(context.Background(), dir, opts...)
	if errors.Is(err, localregistry.ErrInvalidOption) {
		// The test's own mistake: never skip it as a missing component.
		t.Fatalf("starting registry: %v", err)
	}
	if err != nil {
		Require(t, "starting registry: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
