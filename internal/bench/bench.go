package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Storage kinds of the registries' filesystem storage (Config.Storage).
const (
	StorageTmpfs = "tmpfs"
	StorageDisk  = "disk"
)

// tmpfsMagic is statfs(2)'s f_type of tmpfs.
const tmpfsMagic = 0x01021994

// Config is what one run measures and with what. Defaults returns the full run, Quick a
// run small enough for a test that only checks the table is complete.
type Config struct {
	// Promoter is the promoter binary; empty builds ./cmd/promoter of the module in the
	// current directory into a temporary directory.
	Promoter string
	// Tools are the external binaries: registry, crane, regctl, skopeo, cosign.
	Tools Tools
	// Storage is StorageTmpfs (registries store under /dev/shm) or StorageDisk (under DiskDir).
	Storage string
	// DiskDir holds disk storage and the daemon's NATS store; empty is os.TempDir(). It must
	// not be a tmpfs: an fsync there costs nothing and proves nothing.
	DiskDir string
	// Revisions are pushed one after another for the latency figures; the first Warmup are
	// not counted.
	Revisions, Warmup int
	// RevisionTimeout bounds the wait for one revision to be promoted.
	RevisionTimeout time.Duration
	// Rounds of the copy comparison, each running every tool once per destination count,
	// in an order that rotates from round to round.
	Rounds int
	// CopyLayers of CopyLayerSize bytes per platform (two platforms) make the copied image.
	CopyLayers    int
	CopyLayerSize int64
	// IngestEvents are posted at each of IngestSenders concurrency levels, after a warm-up
	// of a tenth as many.
	IngestEvents  int
	IngestSenders []int
	// RSSLayers of RSSLayerSize bytes make the image whose promotion's peak RSS is measured.
	RSSLayers    int
	RSSLayerSize int64
	// ProfileDir, when set, receives CPU profiles of the daemon (its pprof, on a metrics
	// listener of its own): latency.pprof over the first ProfileSeconds of the latency
	// figures, and ingest-N.pprof over ProfileSeconds of ingest at N senders, posted after
	// that level's measured run so that the profiling costs the figures nothing.
	ProfileDir     string
	ProfileSeconds int
	// Progress receives one line per step; nil discards.
	Progress io.Writer
}

// Tools are the paths of the external binaries a run uses.
type Tools struct {
	Registry, Crane, Regctl, Skopeo, Cosign string
}

// Defaults is the full run issue 14 asks for.
func Defaults() Config {
	return Config{
		Storage: StorageTmpfs, Revisions: 510, Warmup: 10, RevisionTimeout: time.Minute,
		Rounds: 5, CopyLayers: 8, CopyLayerSize: 8 << 20,
		IngestEvents: 3000, IngestSenders: []int{1, 8, 64},
		RSSLayers: 16, RSSLayerSize: 64 << 20,
		ProfileSeconds: 10,
	}
}

// Quick is a run of every measurement at a size that takes seconds: its figures mean
// nothing, its table has every row.
func Quick() Config {
	c := Defaults()
	c.Revisions, c.Warmup, c.Rounds = 6, 2, 1
	c.CopyLayers, c.CopyLayerSize = 2, 64<<10
	c.IngestEvents = 50
	c.RSSLayers, c.RSSLayerSize = 2, 1<<20
	return c
}

// FindTools looks each tool up in dir, then on PATH.
func FindTools(dir string) (Tools, error) {
	var errs []error
	find := func(name string) string {
		if dir != "" {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
		p, err := exec.LookPath(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not found in %s or on PATH (bash hack/tools.sh installs it)", name, dir))
		}
		return p
	}
	t := Tools{Registry: find("registry"), Crane: find("crane"), Regctl: find("regctl"), Skopeo: find("skopeo"), Cosign: find("cosign")}
	return t, errors.Join(errs...)
}

func (c Config) validate() error {
	var errs []error
	if c.Storage != StorageTmpfs && c.Storage != StorageDisk {
		errs = append(errs, fmt.Errorf("storage %q: want %s or %s", c.Storage, StorageTmpfs, StorageDisk))
	}
	if c.Revisions <= c.Warmup || c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("revisions %d must be more than the %d of the warm-up", c.Revisions, c.Warmup))
	}
	if c.Rounds < 1 || c.CopyLayers < 1 || c.CopyLayerSize < 1 || c.RSSLayers < 1 || c.RSSLayerSize < 1 {
		errs = append(errs, errors.New("rounds, layer counts and layer sizes must be positive"))
	}
	if c.IngestEvents < 1 || len(c.IngestSenders) == 0 {
		errs = append(errs, errors.New("ingest needs events and at least one sender count"))
	}
	if c.ProfileDir != "" && c.ProfileSeconds < 1 {
		errs = append(errs, fmt.Errorf("profile seconds %d: want at least 1", c.ProfileSeconds))
	}
	for _, s := range c.IngestSenders {
		if s < 1 {
			errs = append(errs, fmt.Errorf("ingest senders %d: want at least 1", s))
		}
	}
	return errors.Join(errs...)
}

// env is what the measurements of one run share.
type env struct {
	cfg      Config
	promoter string
	rusage   string // hack/bench/rusage, which reports a child's peak RSS
	work     string // scratch on disk: configs, keys, logs, the daemon's NATS store
	storage  string // parent of every registry's storage
	watch    *watcher
	cl       *client
	progress io.Writer
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "bench %s: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Run runs every measurement and returns the report; Report.Markdown prints it.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, cl: newClient(), progress: cfg.Progress}
	if e.progress == nil {
		e.progress = io.Discard
	}
	rep := &Report{Config: cfg, Machine: machine(ctx)}

	diskRoot := cfg.DiskDir
	if diskRoot == "" {
		diskRoot = os.TempDir()
	}
	if isTmpfs(diskRoot) {
		return nil, fmt.Errorf("%s is a tmpfs: the daemon's NATS store must be on disk for its fsync to mean anything; pass a directory on disk", diskRoot)
	}
	var err error
	if e.work, err = os.MkdirTemp(diskRoot, "promoter-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.work)
	storageRoot := diskRoot
	if cfg.Storage == StorageTmpfs {
		storageRoot = "/dev/shm"
		if !isTmpfs(storageRoot) {
			return nil, errors.New("/dev/shm is not a tmpfs on this machine: use --storage disk")
		}
	}
	if e.storage, err = os.MkdirTemp(storageRoot, "promoter-bench-registries-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.storage)
	rep.Storage = fmt.Sprintf("%s (%s, %s)", cfg.Storage, e.storage, fsType(e.storage))
	dataDir := filepath.Join(e.work, "nats")
	rep.Durability = fmt.Sprintf("embedded NATS JetStream, SyncAlways: a 2xx is sent after the event is fsynced, store %s (%s)", dataDir, fsType(e.work))

	if e.promoter = cfg.Promoter; e.promoter == "" {
		e.logf("building promoter")
		if e.promoter, err = build(ctx, e.work, "./cmd/promoter"); err != nil {
			return nil, err
		}
	}
	if e.rusage, err = build(ctx, e.work, "./hack/bench/rusage"); err != nil {
		return nil, err
	}
	rep.Machine.Peers = versions(ctx, cfg.Tools)
	if e.watch, err = startWatcher(); err != nil {
		return nil, err
	}
	defer e.watch.Close()

	if err := e.runDaemonPhase(ctx, rep, dataDir); err != nil {
		return nil, err
	}
	if err := e.runCopyPhase(ctx, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// build builds pkg (./cmd/promoter, ./hack/bench/rusage) of the module around the
// working directory into dir.
func build(ctx context.Context, dir, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("finding the module to build %s from (run inside the repository): %v", pkg, err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return bin, nil
}

func isTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == tmpfsMagic
}

func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown filesystem"
	}
	if st.Type == tmpfsMagic {
		return "tmpfs"
	}
	// The mount's device and type, as /proc/mounts names the longest prefix of dir.
	best, kind := "", fmt.Sprintf("filesystem 0x%x", st.Type)
	if b, err := os.ReadFile("/proc/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && strings.HasPrefix(dir, f[1]) && len(f[1]) > len(best) {
				best, kind = f[1], fmt.Sprintf("disk: %s %s on %s", f[2], f[0], f[1])
			}
		}
	}
	return kind
}

// Machine says where the figures come from.
type Machine struct {
	CPUs      int
	CPUModel  string
	MemTotal  string
	Kernel    string
	GoVersion string
	Commit    string
	Date      string
	Peers     string
}

func machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.GoVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	return m
}

// versions is one line naming each external tool's version.
func versions(ctx context.Context, t Tools) string {
	out := func(bin string, args ...string) string {
		b, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(string(b))
	}
	last := func(s string) string {
		line, _, _ := strings.Cut(s, "\n")
		f := strings.Fields(line)
		if len(f) == 0 {
			return "unknown"
		}
		return f[len(f)-1]
	}
	cosign := "unknown"
	for _, line := range strings.Split(out(t.Cosign, "version"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "GitVersion:"); ok {
			cosign = strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("registry %s, crane %s, regctl %s, skopeo %s, cosign %s",
		last(out(t.Registry, "--version")), last(out(t.Crane, "version")),
		last(out(t.Regctl, "version", "--format", "{{.VCSTag}}")), last(out(t.Skopeo, "--version")), cosign)
}
