// Package testenv starts the real components promoter's tests run against: an in-process
// distribution/distribution registry (internal/localregistry, the code `promoter dev` runs;
// notifications, basic auth and a fixed port are its options, passed straight through), an
// embedded NATS JetStream server (single node or a cluster), a kube-apiserver with etcd
// built by hack/kube-assets.sh, a git server on loopback (`git daemon`; smart HTTP or HTTPS
// through `git http-backend` behind a token; sshd with one client key), and rootless
// BuildKit built by hack/buildkit.sh, run as an unprivileged user through
// buildctl-daemonless.sh as the moby/buildkit rootless image runs it, and a Node that runs
// the build Jobs created in the kube-apiserver with that BuildKit, as written.
//
// Every helper takes a testing.TB, registers its own cleanup, and fails the test (never
// skips) when a component cannot be started while CI is set. It must not be imported by
// non-test code.
package testenv

import (
	"os"
	"testing"
)

// Require reports a missing component: outside CI the test is skipped with the reason, in CI
// (the CI environment variable is set) it fails, because a skipped e2e test proves nothing.
func Require(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("required test component unavailable (CI is set, so this fails): "+format, args...)
	}
	t.Skipf("required test component unavailable: "+format, args...)
}
