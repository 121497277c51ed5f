package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// notifyEndpoint is one entry of a registry's notifications.endpoints, with the delivery
// settings the README recommends (timeout 5s, threshold 5, backoff 1s), ignoring pulls and
// blob pushes.
type notifyEndpoint struct {
	Name, URL, Token string
}

// registryProc is a distribution `registry serve` process on a loopback port.
type registryProc struct {
	Host string // 127.0.0.1:PORT
	Dir  string // storage root, removed by Close
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// registryConfig is the registry:3 image's default configuration (in-memory blob
// descriptor cache, filesystem storage) with access logs off, deletes enabled and the
// given notification endpoints.
func registryConfig(addr, dir string, endpoints []notifyEndpoint) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: promoter-bench
`, dir, addr)
	if len(endpoints) > 0 {
		b.WriteString("notifications:\n  endpoints:\n")
		for _, e := range endpoints {
			fmt.Fprintf(&b, `    - name: %s
      url: %s
      headers:
        Authorization: [Bearer %s]
      timeout: 5s
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
      ignore:
        actions: [pull]
`, e.Name, e.URL, e.Token)
		}
	}
	return b.String()
}

// startRegistry runs bin on port (0: a free one) with a configuration storing under a new
// directory of root.
func startRegistry(ctx context.Context, bin, root string, port int, endpoints []notifyEndpoint) (*registryProc, error) {
	dir, err := os.MkdirTemp(root, "registry-")
	if err != nil {
		return nil, fmt.Errorf("registry storage: %w", err)
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(registryConfig(addr, filepath.Join(dir, "data"), endpoints)), 0o600); err != nil {
		return nil, err
	}
	r := &registryProc{Host: addr, Dir: dir, log: &bytes.Buffer{}}
	r.cmd = exec.Command(bin, "serve", cfg)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	if err := waitHTTP(ctx, "http://"+addr+"/v2/", 20*time.Second); err != nil {
		r.Close()
		return nil, fmt.Errorf("registry on %s: %w\n%s", addr, err, r.log)
	}
	return r, nil
}

// Close stops the registry and removes its storage.
func (r *registryProc) Close() {
	stop(r.cmd)
	os.RemoveAll(r.Dir)
}

// daemonProc is a `promoter serve` process.
type daemonProc struct {
	URL     string // http://127.0.0.1:PORT of the webhook listener
	Ops     string // http://127.0.0.1:PORT of the metrics listener; empty without one
	LogPath string
	cmd     *exec.Cmd
	logf    *os.File
}

// startDaemon runs `promoter serve` on port (and its metrics listener on opsPort, unless
// 0) with configYAML, its embedded NATS storing in dataDir.
func startDaemon(ctx context.Context, bin, workDir, dataDir string, port, opsPort int, configYAML string) (*daemonProc, error) {
	var err error
	cfg := filepath.Join(workDir, "promoter.yaml")
	if err := os.WriteFile(cfg, []byte(configYAML), 0o600); err != nil {
		return nil, err
	}
	d := &daemonProc{URL: fmt.Sprintf("http://127.0.0.1:%d", port), LogPath: filepath.Join(workDir, "promoter-serve.log")}
	if d.logf, err = os.Create(d.LogPath); err != nil {
		return nil, err
	}
	ops := ""
	if opsPort != 0 {
		ops = fmt.Sprintf("127.0.0.1:%d", opsPort)
		d.Ops = "http://" + ops
	}
	d.cmd = exec.Command(bin, "serve", "--config", cfg, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--metrics", ops, "--status", "", "--data-dir", dataDir)
	d.cmd.Stdout, d.cmd.Stderr = d.logf, d.logf
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting promoter serve: %w", err)
	}
	if err := waitHTTP(ctx, d.URL+"/readyz", 60*time.Second); err != nil {
		d.Close()
		return nil, fmt.Errorf("promoter serve: %w\n%s", err, d.LogTail(30))
	}
	return d, nil
}

// LogTail is the last n lines the daemon logged.
func (d *daemonProc) LogTail(n int) string {
	b, _ := os.ReadFile(d.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close stops the daemon gracefully (SIGTERM, then SIGKILL after 10s).
func (d *daemonProc) Close() {
	stop(d.cmd)
	d.logf.Close()
}

var stopMu sync.Mutex

func stop(cmd *exec.Cmd) {
	stopMu.Lock()
	defer stopMu.Unlock()
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("not ready in %s", timeout), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
