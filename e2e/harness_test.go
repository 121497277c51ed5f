package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/daemon"
	"github.com/promoter-dev/promoter/internal/events"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/metrics"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/testenv"
	"github.com/promoter-dev/promoter/internal/types"
)

// registryToken is the bearer token the test registries send with their notifications.
const registryToken = "e2e-registry-token"

// runningDaemon is a daemon started in-process by a test.
type runningDaemon struct {
	// URL is the webhook listener's base URL (events, /healthz, /readyz).
	URL string
	// Status is the status listener's base URL (/v1/revisions).
	Status string
	// MetricsURL is the metrics listener's base URL (/metrics).
	MetricsURL string
	// StatusToken is the bearer token of the status API, when the config sets one.
	StatusToken string
	Metrics     *metrics.Metrics
	Logs        *syncBuffer
	stop        func()
}

// startDaemon writes configYAML to a file, loads it the way `promoter serve` does and runs
// the daemon on loopback with an embedded NATS under a temp dir (unless the config names
// one). The daemon stops when the test ends, or on Stop.
func startDaemon(t testing.TB, configYAML string) *runningDaemon {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "promoter.yaml")
	if err := os.WriteFile(path, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Input{File: path})
	if err != nil {
		t.Fatalf("config: %v\n%s", err, configYAML)
	}
	if cfg.DataDir == "" || cfg.DataDir == "./data" {
		cfg.DataDir = filepath.Join(dir, "data")
	}
	cfg.Listen, cfg.Metrics, cfg.Status = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	logs := &syncBuffer{t: t}
	m := metrics.New(prometheus.NewRegistry())
	started, err := daemon.Start(context.Background(), cfg,
		daemon.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		daemon.WithMetrics(m),
	)
	if err != nil {
		t.Fatalf("daemon did not start: %v", err)
	}
	addrs := started.Addrs()
	d := &runningDaemon{URL: "http://" + addrs.Listen, Status: "http://" + addrs.Status, MetricsURL: "http://" + addrs.Metrics, Metrics: m, Logs: logs}
	if cfg.Auth.StatusToken.IsSet() {
		if d.StatusToken, err = cfg.Auth.StatusToken.Resolve(); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			stopped := make(chan error, 1)
			go func() { stopped <- started.Stop() }()
			select {
			case err := <-stopped:
				if err != nil {
					t.Errorf("daemon stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("daemon did not stop in 30s")
			}
		})
	}
	t.Cleanup(d.stop)
	d.waitReady(t)
	return d
}

// Stop stops the daemon and waits for it.
func (d *runningDaemon) Stop() { d.stop() }

func (d *runningDaemon) waitReady(t testing.TB) {
	t.Helper()
	err := testenv.WaitFor(30*time.Second, func() error {
		resp, err := http.Get(d.URL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("daemon not ready in 30s: %v", err)
	}
}

// notifyHeaders are what a registry must send to the daemon.
func notifyHeaders() http.Header {
	return http.Header{"Authorization": {"Bearer " + registryToken}}
}

// staged is the setup of a merge-only pipeline's test: NATS, a destination registry,
// promoter's own cosign key pair, and a staging repository on a reserved port whose
// registry starts only with the daemon, since it notifies the daemon of each push.
type staged struct {
	NATS *testenv.NATS
	// Staging and Dest are the pipeline's repository on the staging and the destination
	// registry.
	Staging, Dest string
	// Key and Pub are promoter's cosign key pair, encrypted with "pw" (a keyless daemon
	// leaves them unused).
	Key, Pub    string
	stagingPort int
}

// newStaged starts NATS and the destination registry, writes promoter's key pair and
// reserves the staging registry's port; repo names the repository in both registries.
func newStaged(t testing.TB, repo string) *staged {
	t.Helper()
	s := &staged{NATS: testenv.StartNATS(t), stagingPort: testenv.FreePort(t)}
	s.Staging = fmt.Sprintf("127.0.0.1:%d/%s", s.stagingPort, repo)
	s.Dest = testenv.StartRegistry(t).Host + "/" + repo
	s.Key, s.Pub = writeKeyPair(t, t.TempDir(), "pw")
	return s
}

// start starts the daemon with configYAML, then the staging registry, which notifies it
// of each push.
func (s *staged) start(t testing.TB, configYAML string) *runningDaemon {
	t.Helper()
	d := startDaemon(t, configYAML)
	testenv.StartRegistry(t, localregistry.WithPort(s.stagingPort), localregistry.WithNotify(d.URL+"/v1/events/registry", notifyHeaders()))
	return d
}

// startSigning is start with the config of a daemon on s's NATS that signs with s.Key,
// reconciles every 2s and runs pipelines.
func (s *staged) startSigning(t testing.TB, pipelines ...pipelineConfig) *runningDaemon {
	t.Helper()
	return s.start(t, s.signingConfig(t, pipelines...))
}

// signingConfig is startSigning's config.
func (s *staged) signingConfig(t testing.TB, pipelines ...pipelineConfig) string {
	t.Helper()
	mods := []configMod{withNATS(s.NATS.URL), withSigningKey(s.Key, "pw"), withReconcile("2s")}
	for _, p := range pipelines {
		mods = append(mods, withPipeline(p))
	}
	return newDaemonConfig(t, mods...)
}

// startTrusting is startSigning with one merge-only pipeline, named pipeline, for
// linux/amd64 and linux/arm64 from s.Staging, that merges only images signed with the CI
// key ciPub, signs the index and promotes it to s.Dest, which requires a signature.
func (s *staged) startTrusting(t testing.TB, pipeline, ciPub string) *runningDaemon {
	t.Helper()
	return s.startSigning(t, s.trustingPipeline(pipeline, ciPub))
}

// trustingPipeline is startTrusting's pipeline.
func (s *staged) trustingPipeline(pipeline, ciPub string) pipelineConfig {
	return pipelineConfig{
		Name: pipeline, Platforms: bothArches, Staging: s.Staging,
		Sign: true, Verify: trusting(ciPub), Promote: signedTo(s.Dest),
	}
}

// revision asks the daemon's status API, as `promoter status` does; nil before the daemon
// has any state of rev.
func (d *runningDaemon) revision(t testing.TB, pipeline, rev string) *types.Revision {
	t.Helper()
	r, err := d.tryRevision(pipeline, rev)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryRevision is revision without failing the test: the status API answers 503 while the
// bus is down.
func (d *runningDaemon) tryRevision(pipeline, rev string) (*types.Revision, error) {
	if d.Status == "" {
		return nil, errors.New("runningDaemon.Status is not set: the status API has a listener of its own (config key status)")
	}
	r, err := (&status.Client{URL: d.Status, Token: d.StatusToken}).Revision(context.Background(), pipeline, rev)
	if errors.Is(err, status.ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// waitPhase polls the status endpoint until the revision reaches one of phases; the
// status API being unavailable meanwhile (a NATS outage under test) only delays it.
func (d *runningDaemon) waitPhase(t testing.TB, pipeline, rev string, timeout time.Duration, phases ...types.Phase) *types.Revision {
	t.Helper()
	var last *types.Revision
	err := testenv.WaitFor(timeout, func() error {
		r, err := d.tryRevision(pipeline, rev)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if r == nil {
			return errors.New("no state yet")
		}
		if last = r; !slices.Contains(phases, r.Phase) {
			return fmt.Errorf("in phase %s", r.Phase)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s/%s did not reach %v in %s; last state %+v (%v)\nlogs:\n%s", pipeline, rev, phases, timeout, last, err, d.Logs.String())
	}
	return last
}

// syncBuffer collects the daemon's logs for assertions and prints them when a test fails.
type syncBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Contains reports whether a log line contains every one of parts.
func (s *syncBuffer) Contains(parts ...string) bool {
	for _, line := range strings.Split(s.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok && line != "" {
			return true
		}
	}
	return false
}

func yamlf(format string, args ...any) string {
	return strings.ReplaceAll(fmt.Sprintf(format, args...), "\t", "  ")
}

// writeKeyPair writes a cosign key pair encrypted with password into dir.
func writeKeyPair(t testing.TB, dir, password string) (private, public string) {
	t.Helper()
	priv, pub, err := sign.GenerateKeyPair([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(private, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return private, public
}

// postGitHub delivers payload to the daemon as GitHub's push event, signed with
// githubSecret, and returns how many events the daemon accepted; an answer other than 200
// fails the test.
func postGitHub(t *testing.T, daemonURL, delivery string, payload any) events.Summary {
	t.Helper()
	return postGitHubVia(t, http.DefaultClient, daemonURL, delivery, payload)
}

// postGitHubVia is postGitHub through client (one that reaches into a cluster's network).
func postGitHubVia(t *testing.T, client *http.Client, daemonURL, delivery string, payload any) events.Summary {
	t.Helper()
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(githubSecret))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, daemonURL+"/v1/events/source/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum events.Summary
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&sum) != nil {
		t.Fatalf("github webhook: %s", resp.Status)
	}
	return sum
}

// buildContext writes a build context for the local executor (one small file) under dir
// and returns its path.
func buildContext(t testing.TB, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// startServeBinary runs the real `promoter serve` binary bin with configYAML (written to
// dir/promoter.yaml), under `prlimit --nofile` when nofile > 0, its output in
// dir/daemon.log. It returns the daemon, reachable at listen, once it answers /readyz,
// and the log's path; the log's tail is printed when the test fails.
func startServeBinary(t *testing.T, bin, dir, listen, configYAML string, nofile int) (*runningDaemon, string) {
	t.Helper()
	cfgPath := filepath.Join(dir, "promoter.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "serve", "--config", cfgPath}
	if nofile > 0 {
		args = append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", lastLinesOf(readFile(logPath), 40))
		}
	})
	d := &runningDaemon{URL: "http://" + listen, Logs: &syncBuffer{t: t}}
	d.waitReady(t)
	return d, logPath
}
