package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/promoter-dev/promoter/internal/testenv"
)

// buildBinary compiles promoter once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "promoter")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The foundation's "done when": serve with no config starts on embedded NATS, /readyz turns
// ready, /metrics serves Go, process and promoter metrics, and SIGTERM exits 0 within 5s.
func TestServeWithNoConfigThenSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	listen, metrics, status := freeAddr(t), freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "serve", "--insecure-no-auth", "--listen", listen, "--metrics", metrics, "--status", status, "--data-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	waitHTTP(t, "http://"+listen+"/readyz", http.StatusOK)
	body := get(t, "http://"+metrics+"/metrics")
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "promoter_merge_duration_seconds"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if got := get(t, "http://"+listen+"/healthz"); strings.TrimSpace(got) != "ok" {
		t.Errorf("/healthz: got %q", got)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after SIGTERM\nstderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "promoter stopped") {
		t.Errorf("no clean-stop log line in:\n%s", stderr.String())
	}
}

func TestServeInvalidConfigExitsBeforeListening(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	listen := freeAddr(t)
	cfg := fmt.Sprintf("listen: %s\nlogLevel: loud\npipelines:\n  - name: web\n    platforms: [linux/arm65]\n    staging: staging.example/acme/web\n    source: {repo: https://git.example/web}\n", listen)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--insecure-no-auth", "--config", file).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("got %v, want a non-zero exit\n%s", err, out)
	}
	for _, want := range []string{`logLevel: "loud" is not one of`, `pipelines[0].platforms[0]: "linux/arm65" is not a known platform`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
		c.Close()
		t.Errorf("something listens on %s after an invalid config", listen)
	}
}

func TestServeRefusesToRunWithoutRegistryToken(t *testing.T) {
	root := newRootCmd()
	var stderr bytes.Buffer
	root.SetErr(&stderr)
	root.SetArgs([]string{"serve", "--listen", freeAddr(t), "--metrics", "", "--status", "", "--data-dir", t.TempDir()})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "auth.registryToken is not set") || !strings.Contains(err.Error(), "--insecure-no-auth") {
		t.Fatalf("got %v, want a refusal naming auth.registryToken and --insecure-no-auth", err)
	}
}

func TestVersion(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "promoter ") || !strings.HasPrefix(lines[1], "commit: ") || !strings.HasPrefix(lines[2], "go: go1.") {
		t.Errorf("version output: %q", lines)
	}
}

func waitHTTP(t *testing.T, url string, status int) {
	t.Helper()
	err := testenv.WaitFor(30*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			return fmt.Errorf("answered %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s did not answer %d within 30s (last: %v)", url, status, err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}
