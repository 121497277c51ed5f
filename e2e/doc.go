// Package e2e holds promoter's end-to-end scenarios. They run against real components on
// loopback: distribution v3 registries, NATS JetStream servers and a kube-apiserver with
// etcd (built by hack/kube-assets.sh). With CI set, a missing component fails the test.
package e2e
