// Package dev is `promoter dev`: the whole flow on loopback with embedded NATS, two
// in-process registries, a generated key, the local builder and an example pipeline.
package dev

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"text/template"
	"time"

	"github.com/promoter-dev/promoter/examples"
	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/daemon"
	"github.com/promoter-dev/promoter/internal/localregistry"
	"github.com/promoter-dev/promoter/internal/registry"
	"github.com/promoter-dev/promoter/internal/sign"
	"github.com/promoter-dev/promoter/internal/status"
	"github.com/promoter-dev/promoter/internal/types"
)

// Option changes the development environment Run starts.
type Option func(*options) error

type options struct {
	listen  string        // default DefaultListen
	dataDir string        // default: a new temporary directory
	source  string        // default "": the embedded example, written to the data dir
	demo    bool          // default false: print what to try and run until stopped
	timeout time.Duration // default DefaultTimeout
	out     io.Writer     // default io.Discard
	log     *slog.Logger  // default: LogFile in the data dir, at info
}

// Defaults of the options.
const (
	DefaultListen  = "127.0.0.1:8080"
	DefaultTimeout = 3 * time.Minute
)

// ExampleDir is where, under the data dir, Run writes the embedded example source
// (examples.Hello) when WithSource names none; it is the example pipeline's build.dir.
const ExampleDir = "examples/hello"

// WithListen is the daemon's address; port 0 picks one. The default is DefaultListen.
func WithListen(addr string) Option { return func(o *options) error { o.listen = addr; return nil } }

// WithDataDir holds the registries, JetStream, the generated key and config; the default
// is a new temporary directory.
func WithDataDir(dir string) Option { return func(o *options) error { o.dataDir = dir; return nil } }

// WithSource is the example source tree the local builder layers into images, a
// directory (relative to the working directory). The default, also when dir is empty, is
// the tree embedded in the binary (examples/hello of the repository), written afresh to
// ExampleDir under the data dir on each start: the demo runs from any directory.
func WithSource(dir string) Option { return func(o *options) error { o.source = dir; return nil } }

// WithDemo triggers a source change and follows it to a verified, promoted index, bounded
// by timeout (0 keeps DefaultTimeout).
func WithDemo(timeout time.Duration) Option {
	return func(o *options) error {
		o.demo = true
		if timeout > 0 {
			o.timeout = timeout
		}
		return nil
	}
}

// WithOutput receives what a user reads: the banner, the commands to try, the demo's
// stages. The default discards.
func WithOutput(w io.Writer) Option { return func(o *options) error { o.out = w; return nil } }

// WithLogger receives the daemon's logs. The default writes them, at info, to LogFile in
// the data dir (named in the banner), so that the output holds only what WithOutput says.
func WithLogger(l *slog.Logger) Option { return func(o *options) error { o.log = l; return nil } }

// LogFile is where, under the data dir, the daemon's logs go unless WithLogger is given.
const LogFile = "promoter.log"

// Pipeline is the name of the example pipeline.
const Pipeline = "hello"

// exampleRepo is the source repository the example pipeline and the demo webhook name;
// the local builder reads the example source (WithSource) instead of cloning it.
const exampleRepo = "https://example.invalid/promoter/hello"

// env is a started development environment.
type env struct {
	o          options
	daemonURL  string // webhooks, /readyz
	statusURL  string // /v1/revisions
	staging    *localregistry.Registry
	production *localregistry.Registry
	cfg        *config.Config
	keyPub     string
	tokens     map[string]string
}

// Run starts embedded NATS, a staging and a production registry with notifications wired
// to the daemon, a generated signing key, the local builder and the example pipeline, all
// on loopback. With WithDemo it pushes a source change through build, merge, sign and
// promote and returns once the promoted index verifies; otherwise it prints what to try
// and runs until ctx ends.
func Run(ctx context.Context, opts ...Option) error {
	o := options{listen: DefaultListen, timeout: DefaultTimeout, out: io.Discard}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	logPath, closeLog, err := o.prepare()
	if err != nil {
		return err
	}
	defer closeLog()
	e := &env{o: o, tokens: map[string]string{}}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	cfgPath, err := e.writeConfig(ports)
	if err != nil {
		return err
	}
	cfg, err := config.Load(config.Input{File: cfgPath})
	if err != nil {
		return fmt.Errorf("generated config %s: %w", cfgPath, err)
	}
	e.cfg = cfg

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := daemon.Start(ctx, cfg, daemon.WithLogger(o.log),
		daemon.WithRegistryClient(registry.Client{Insecure: cfg.InsecureHosts()}))
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer d.Stop()
	e.daemonURL, e.statusURL = "http://"+d.Addrs().Listen, "http://"+d.Addrs().Status
	headers := http.Header{"Authorization": {"Bearer " + e.tokens["registry"]}}
	notify := localregistry.WithNotify(e.daemonURL+"/v1/events/registry", headers)
	if e.staging, err = localregistry.Start(ctx, filepath.Join(o.dataDir, "staging"), localregistry.WithPort(ports[0]), notify); err != nil {
		return fmt.Errorf("staging registry: %w", err)
	}
	defer e.staging.Close()
	if e.production, err = localregistry.Start(ctx, filepath.Join(o.dataDir, "production"), localregistry.WithPort(ports[1])); err != nil {
		return fmt.Errorf("production registry: %w", err)
	}
	defer e.production.Close()
	if err := e.waitReady(ctx); err != nil {
		return err
	}
	e.banner(cfgPath, logPath)

	if o.demo {
		if err := e.demo(ctx); err != nil {
			return err
		}
		return d.Stop()
	}
	e.printTryCommands()
	select {
	case <-ctx.Done():
		return d.Stop()
	case <-waitChan(d):
		return d.Wait()
	}
}

// prepare fills in what the options leave to Run: the data dir (a new temporary one
// when none is given), the daemon's log (LogFile in the data dir, whose path it returns,
// when no logger is given; closeLog closes it) and the example source (the embedded one,
// written to the data dir). A --source that is no directory is refused here, before
// anything starts.
func (o *options) prepare() (logPath string, closeLog func(), err error) {
	closeLog = func() {}
	if o.source != "" {
		if st, err := os.Stat(o.source); err != nil || !st.IsDir() {
			return "", closeLog, fmt.Errorf("example source %q is not a directory: pass a directory to --source, or leave it out for the embedded example", o.source)
		}
	}
	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "promoter-dev-")
		if err != nil {
			return "", closeLog, fmt.Errorf("data dir: %w", err)
		}
		o.dataDir = dir
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return "", closeLog, fmt.Errorf("data dir: %w", err)
	}
	if o.log == nil {
		logPath = filepath.Join(o.dataDir, LogFile)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return "", closeLog, fmt.Errorf("daemon log: %w", err)
		}
		closeLog = func() { _ = f.Close() }
		o.log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if o.source == "" {
		dir, err := writeExample(o.dataDir)
		if err != nil {
			closeLog()
			return "", func() {}, err
		}
		o.source = dir
	}
	return logPath, closeLog, nil
}

// waitChan is closed when d has stopped on its own.
func waitChan(d *daemon.Daemon) <-chan struct{} {
	c := make(chan struct{})
	go func() { _ = d.Wait(); close(c) }()
	return c
}

//go:embed promoter.yaml.tmpl
var configTemplate string

// writeConfig writes the generated configuration and key pair into the data dir, so the
// user can read what the dev environment runs and reuse it with `promoter serve`.
func (e *env) writeConfig(ports []int) (string, error) {
	for _, k := range []string{"registry", "generic", "github", "password"} {
		e.tokens[k] = randomHex(16)
	}
	priv, pub, err := sign.GenerateKeyPair([]byte(e.tokens["password"]))
	if err != nil {
		return "", err
	}
	keyPath := filepath.Join(e.o.dataDir, "cosign.key")
	e.keyPub = filepath.Join(e.o.dataDir, "cosign.pub")
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(e.keyPub, pub, 0o644); err != nil {
		return "", err
	}
	source, err := filepath.Abs(e.o.source)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	err = template.Must(template.New("promoter.yaml").Parse(configTemplate)).Execute(&buf, map[string]any{
		"Listen": e.o.listen, "NATSDir": filepath.Join(e.o.dataDir, "nats"), "Tokens": e.tokens,
		"Key": keyPath, "PublicKey": e.keyPub, "Pipeline": Pipeline, "Repo": exampleRepo, "Source": source,
		"Staging":    fmt.Sprintf("127.0.0.1:%d/%s", ports[0], Pipeline),
		"Production": fmt.Sprintf("127.0.0.1:%d/%s", ports[1], Pipeline),
	})
	if err != nil {
		return "", fmt.Errorf("rendering the dev configuration: %w", err)
	}
	path := filepath.Join(e.o.dataDir, "promoter.yaml")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// writeExample writes the embedded example source to ExampleDir under dataDir, replacing
// what an earlier run wrote there, and returns that directory.
func writeExample(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, filepath.FromSlash(ExampleDir))
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("example source: %w", err)
	}
	if err := os.CopyFS(dir, examples.Hello()); err != nil {
		return "", fmt.Errorf("writing the embedded example source to %s: %w", dir, err)
	}
	return dir, nil
}

func (e *env) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.daemonURL+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("the daemon did not become ready in 30s (embedded NATS not starting?)")
}

func (e *env) banner(cfgPath, logPath string) {
	fmt.Fprintf(e.o.out, `promoter dev is running (everything on loopback):
  daemon              %s
  status API          %s
  staging registry    %s   (notifications → daemon)
  production registry %s
  config              %s
  signing key         %s (public: %s)
  example source      %s
`, e.daemonURL, e.statusURL, e.staging.Host, e.production.Host, cfgPath, e.cfg.Keys.Cosign, e.keyPub, e.cfg.Pipelines[0].Build.Dir)
	if logPath != "" {
		fmt.Fprintf(e.o.out, "  daemon log          %s\n", logPath)
	}
}

func (e *env) printTryCommands() {
	rev := sourceRevision(e.o.source)
	fmt.Fprintf(e.o.out, `
Try it:
  # a source change: builds both platforms, merges, signs and promotes
  curl -sS -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
    -d '{"repo":"%s","ref":"refs/heads/main","revision":"%s"}' \
    %s/v1/events/source/generic
  promoter status --server %s
  promoter verify --key %s %s:%s
  crane manifest %s:%s

Stop with Ctrl-C.
`, e.tokens["generic"], exampleRepo, rev, e.daemonURL, e.statusURL, e.keyPub,
		e.cfg.Pipelines[0].Promote[0].To, rev, e.cfg.Pipelines[0].Promote[0].To, rev)
}

// demo sends a source change and prints each stage as the daemon reports it.
func (e *env) demo(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.o.timeout)
	defer cancel()
	rev := sourceRevision(e.o.source)
	body, _ := json.Marshal(map[string]string{"repo": exampleRepo, "ref": "refs/heads/main", "revision": rev})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.daemonURL+"/v1/events/source/generic", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.tokens["generic"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sending the source change: %w", err)
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("the daemon refused the source change: %s %s", resp.Status, reply)
	}
	fmt.Fprintf(e.o.out, "\nsource change  %s@%s accepted\n", Pipeline, rev)

	r, err := e.follow(ctx, rev)
	if err != nil {
		return err
	}
	dst := e.cfg.Pipelines[0].Promote[0].To + ":" + rev
	key, err := sign.LoadVerifier(ctx, e.keyPub, nil)
	if err != nil {
		return err
	}
	v, err := sign.NewVerifier(registry.Client{}, key)
	if err != nil {
		return err
	}
	checked, err := v.Verify(ctx, dst)
	if err != nil {
		return fmt.Errorf("verifying the promoted index %s: %w", dst, err)
	}
	for _, c := range checked {
		what := "index"
		if c.Platform != "" {
			what = c.Platform
		}
		fmt.Fprintf(e.o.out, "verified       %-12s %s (%s signature, %s)\n", what, c.Digest, c.Format, e.keyPub)
	}
	fmt.Fprintf(e.o.out, "\ndone: %s@%s is promoted and verified\n", dst, r.Promotions[e.cfg.Pipelines[0].Promote[0].To].Digest)
	return nil
}

// follow polls the status endpoint and prints each change until the revision is promoted,
// failed or conflicted.
func (e *env) follow(ctx context.Context, rev string) (*types.Revision, error) {
	seen := map[string]bool{}
	say := func(key, format string, args ...any) {
		if !seen[key] {
			seen[key] = true
			fmt.Fprintf(e.o.out, format+"\n", args...)
		}
	}
	for {
		r, err := e.status(ctx, rev)
		if err != nil {
			return nil, err
		}
		if r != nil {
			plats := make([]string, 0, len(r.Platforms))
			for p := range r.Platforms {
				plats = append(plats, p)
			}
			sort.Strings(plats)
			for _, p := range plats {
				ps := r.Platforms[p]
				if ps.Build != "" {
					say("build "+p+string(ps.Build), "build          %-12s %s %s", p, ps.Build, ps.BuildReason)
				}
				if ps.Digest != "" {
					say("push "+p, "pushed         %-12s %s:%s@%s", p, e.cfg.Pipelines[0].Staging, ps.Tag, ps.Digest)
				}
			}
			if r.Index != "" {
				say("merged", "merged         %-12s %s:%s@%s", "index", e.cfg.Pipelines[0].Staging, rev, r.Index)
			}
			if r.Signed {
				say("signed", "signed         index and %d children", len(r.Platforms))
			}
			for to, pr := range r.Promotions {
				if pr.Done {
					say("promoted "+to, "promoted       %s:%s@%s", to, rev, pr.Digest)
				} else if pr.Error != "" {
					say("promote error "+pr.Error, "promote retry  %s: %s", to, pr.Error)
				}
			}
			switch r.Phase {
			case types.PhasePromoted:
				return r, nil
			case types.PhaseFailed, types.PhaseConflicted:
				return nil, fmt.Errorf("revision %s %s: %s", rev, r.Phase, r.Reason)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("revision %s was not promoted within %s (last state: %+v)", rev, e.o.timeout, r)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// status is rev's state as the daemon's status API gives it; nil before it has any.
func (e *env) status(ctx context.Context, rev string) (*types.Revision, error) {
	r, err := (&status.Client{URL: e.statusURL}).Revision(ctx, Pipeline, rev)
	if errors.Is(err, status.ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// sourceRevision names the example tree's content like a commit id: the same tree gives
// the same revision, an edited one a new revision.
func sourceRevision(dir string) string {
	h := sha1.New()
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		b, _ := os.ReadFile(path)
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts finds n loopback ports for the registries, whose addresses must be in the
// configuration before they start.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lis []net.Listener
	defer func() {
		for _, l := range lis {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lis = append(lis, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
