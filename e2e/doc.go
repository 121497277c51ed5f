// Package e2e holds promoter's end-to-end scenarios. They run against real components on
// loopback: distribution v3 registries, NATS JetStream servers and a kube-apiserver with
// etcd (built by hack/kube-assets.sh), and rootless BuildKit (built by hack/buildkit.sh)
// building from git revisions served on loopback. With CI set, a missing component fails
// the test. A test's daemon config is built, not written out: newDaemonConfig and its
// modifiers (config_test.go) render it from typed structs.
package e2e
