package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// natsBinary caches the nats-server build for the whole test binary.
var natsBinary struct {
	once sync.Once
	path string
	err  error
}

// NATSBinary returns a nats-server executable built from the module version in go.mod,
// cached in ToolDir as nats-server-<version> so it is built once per machine (~1 min cold).
// Tests that must SIGKILL NATS need it as a separate process.
func NATSBinary(t testing.TB) string {
	t.Helper()
	natsBinary.once.Do(func() { natsBinary.path, natsBinary.err = buildNATS() })
	if natsBinary.err != nil {
		Require(t, "building nats-server: %v", natsBinary.err)
	}
	return natsBinary.path
}

func buildNATS() (string, error) {
	const module = "github.com/nats-io/nats-server/v2"
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	version := strings.TrimSpace(string(out))
	dir := ToolDir()
	if dir == "" {
		return "", fmt.Errorf("no tool directory (set PROMOTER_TOOLS or HOME)")
	}
	path := filepath.Join(dir, "nats-server-"+version)
	if isExecutable(path) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build beside the target and rename, so concurrent test binaries never run a half-written file.
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, module)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s@%s: %w\n%s", module, version, err, stderr.String())
	}
	return path, os.Rename(tmp, path)
}

// NATSProcess is nats-server running as its own process, so a test can SIGKILL it.
type NATSProcess struct {
	Name     string
	URL      string // nats://127.0.0.1:PORT
	StoreDir string

	bin, config, logFile string
	monitor              int
	mu                   sync.Mutex
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// StartNATSProcess starts a single JetStream server (nats-server's default sync
// interval) storing in a temporary directory. It is killed when the test ends.
func StartNATSProcess(t testing.TB) *NATSProcess {
	t.Helper()
	ports := freePorts(t, 2)
	n := newNATSProcess(t, "n0", ports[0], ports[1], "")
	n.Start(t)
	n.waitHealthy(t, 30*time.Second)
	return n
}

// StartNATSProcessCluster starts size JetStream servers as separate processes forming one
// cluster, and waits until each reports healthy.
func StartNATSProcessCluster(t testing.TB, size int) []*NATSProcess {
	t.Helper()
	ports := freePorts(t, 3*size) // per node: client, monitor, route
	var routes []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+2]))
	}
	nodes := make([]*NATSProcess, size)
	for i := range nodes {
		cluster := fmt.Sprintf("cluster {\n  name: promoter-test\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			ports[3*i+2], strings.Join(routes, ", "))
		nodes[i] = newNATSProcess(t, fmt.Sprintf("n%d", i), ports[3*i], ports[3*i+1], cluster)
		nodes[i].Start(t)
	}
	for _, n := range nodes {
		n.waitHealthy(t, 60*time.Second)
	}
	return nodes
}

// NATSURLs is a comma-separated client URL list of nodes.
func NATSURLs(nodes []*NATSProcess) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.URL
	}
	return strings.Join(urls, ",")
}

func newNATSProcess(t testing.TB, name string, port, monitor int, extra string) *NATSProcess {
	t.Helper()
	dir := t.TempDir()
	n := &NATSProcess{
		Name: name, bin: NATSBinary(t), StoreDir: filepath.Join(dir, "jetstream"),
		config: filepath.Join(dir, "nats.conf"), logFile: filepath.Join(dir, "nats.log"),
		monitor: monitor,
	}
	n.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n}\n%s",
		name, port, n.monitor, n.StoreDir, extra)
	if err := os.WriteFile(n.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("nats-server %s log (last 40 lines):\n%s", n.Name, tail(n.logFile, 40))
		}
	})
	return n
}

// Start starts the server (again) with the same name, ports and store directory, and
// returns once its process runs; Wait for readiness with WaitHealthy.
func (n *NATSProcess) Start(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		t.Fatalf("nats-server %s is already running", n.Name)
	}
	log, err := os.OpenFile(n.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(n.bin, "-c", n.config)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		Require(t, "starting %s: %v", n.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited
}

// Restart starts the server again and waits until it is healthy.
func (n *NATSProcess) Restart(t testing.TB, timeout time.Duration) {
	t.Helper()
	n.Start(t)
	n.waitHealthy(t, timeout)
}

// Kill sends SIGKILL, as the OOM killer or a node failure would, and waits for the
// process to exit. Killing a stopped server is harmless.
func (n *NATSProcess) Kill(t testing.TB) {
	t.Helper()
	n.kill()
}

func (n *NATSProcess) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// WaitHealthy waits until the server's /healthz says its JetStream is current.
func (n *NATSProcess) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	n.waitHealthy(t, timeout)
}

func (n *NATSProcess) waitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor)
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not healthy in %s (last: %v)\n%s", n.Name, timeout, err, tail(n.logFile, 40))
		}
		select {
		case <-n.exitedChan():
			t.Fatalf("nats-server %s exited while starting:\n%s", n.Name, tail(n.logFile, 40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *NATSProcess) exitedChan() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// freePorts returns n distinct loopback ports nobody listens on: all are held open until
// the last is found, so the kernel cannot hand out one twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}
