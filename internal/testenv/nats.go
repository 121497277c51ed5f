package testenv

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an embedded nats-server with JetStream, listening on loopback.
type NATS struct {
	Server   *server.Server
	URL      string
	StoreDir string
	opts     server.Options
}

// StartNATS starts a single JetStream node storing in a temporary directory.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return startNATS(t, server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
	})
}

// natsReady bounds a server's start: generous, because the unit tests run with -race, a
// package per core, and a cluster node is ready only once its peers answer.
const natsReady = 30 * time.Second

func startNATS(t testing.TB, opts server.Options) *NATS {
	t.Helper()
	n := launchNATS(t, opts)
	n.waitReady(t)
	return n
}

// launchNATS starts a server without waiting for it.
func launchNATS(t testing.TB, opts server.Options) *NATS {
	t.Helper()
	// The server keeps &opts and writes the ports it chose into it as it starts: the copy
	// kept for Restart is taken before.
	n := &NATS{StoreDir: opts.StoreDir, opts: opts}
	ns, err := server.NewServer(&opts)
	if err != nil {
		Require(t, "nats-server: %v", err)
	}
	n.Server = ns
	go ns.Start()
	t.Cleanup(n.Shutdown)
	return n
}

func (n *NATS) waitReady(t testing.TB) {
	t.Helper()
	if !n.Server.ReadyForConnections(natsReady) {
		Require(t, "nats-server did not become ready in %s", natsReady)
	}
	n.URL = n.Server.ClientURL()
}

// Shutdown stops the server and waits for it to exit. Calling it twice is harmless.
func (n *NATS) Shutdown() {
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// Restart stops the server and starts a new one on the same port and store directory, as a
// crashed and restarted NATS would come back. Streams and durable consumers survive.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Shutdown()
	opts := n.opts
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(n.URL, "nats://"))
	fmt.Sscan(port, &opts.Port)
	ns, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("restarting nats-server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(natsReady) {
		t.Fatalf("restarted nats-server did not become ready in %s", natsReady)
	}
	n.Server = ns
}

// Cluster is a JetStream cluster of embedded servers on loopback.
type Cluster struct {
	Nodes []*NATS
}

// URLs is a comma-separated client URL list for nats.Connect.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL
	}
	return strings.Join(urls, ",")
}

// StartNATSCluster starts size JetStream servers that form one cluster, and waits until the
// cluster has a meta leader.
func StartNATSCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	ports := make([]int, size)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &Cluster{}
	for i := 0; i < size; i++ {
		opts := server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
			Cluster: server.ClusterOpts{Name: "promoter-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.Nodes = append(c.Nodes, launchNATS(t, opts))
	}
	// All are started before any is waited for: each one's routes need the others.
	for _, n := range c.Nodes {
		n.waitReady(t)
	}
	err := WaitFor(30*time.Second, func() error {
		for _, n := range c.Nodes {
			if n.Server.JetStreamIsLeader() {
				return nil
			}
		}
		return errors.New("no JetStream meta leader")
	})
	if err != nil {
		Require(t, "NATS cluster of %d elected no JetStream meta leader in 30s", size)
	}
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePort is a loopback TCP port nobody listens on right now, for components whose
// address must be known before they start (a registry named in a daemon's config).
func FreePort(t testing.TB) int { return freePort(t) }
