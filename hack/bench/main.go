// Command bench runs promoter's benchmark (internal/bench) and prints its table as
// markdown on stdout, progress on stderr. `bash hack/bench.sh` installs the tools it needs
// and runs it; see the README's Performance section.
//
//	go run ./hack/bench [--quick] [--storage tmpfs|disk] [--revisions 510] [--rounds 5] ...
//
// It lives outside cmd/promoter so that the shipped binary carries no benchmark code: it
// builds promoter from the tree and runs it, the registries and the peers as processes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/promoter-dev/promoter/internal/bench"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	f := defineFlags(fs)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if f.printScript {
		fmt.Print(bench.PeersScript())
		return nil
	}
	cfg, err := f.config(fs)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Markdown(os.Stdout)
	if f.out != "" {
		out, err := os.Create(f.out)
		if err != nil {
			return err
		}
		defer out.Close()
		rep.Markdown(out)
	}
	return nil
}

// benchFlags are the command line. A zero size or count means the base config's value
// (bench.Defaults, or bench.Quick with --quick): only the flags given change it.
type benchFlags struct {
	quick, printScript                     bool
	promoter, tools, out, storage, diskDir string
	revisions, warmup, rounds, copyLayers  int
	copySize, senders, rssSize, profile    string
	events, rssLayers, profileSecs         int
}

// defineFlags defines the command line on fs.
func defineFlags(fs *flag.FlagSet) *benchFlags {
	f := &benchFlags{}
	fs.BoolVar(&f.quick, "quick", false, "every measurement at a size that takes seconds (the figures mean nothing; for checking the bench works)")
	fs.BoolVar(&f.printScript, "print-peers-script", false, "print the script that runs a peer once per destination in parallel, and exit")
	fs.StringVar(&f.promoter, "promoter", "", "promoter binary to measure; empty builds ./cmd/promoter of this tree")
	fs.StringVar(&f.tools, "tools", toolDir(), "directory of registry, crane, regctl, cosign (hack/tools.sh); then PATH (skopeo)")
	fs.StringVar(&f.out, "out", "", "also write the table to this file")
	fs.StringVar(&f.storage, "storage", "", "registry storage: tmpfs (/dev/shm) or disk (--disk-dir) (default tmpfs)")
	fs.StringVar(&f.diskDir, "disk-dir", "", "directory on disk for disk storage and the daemon's NATS store (default $TMPDIR or /tmp)")
	fs.IntVar(&f.revisions, "revisions", 0, "revisions pushed for the latency figures, warm-up included (default 510)")
	fs.IntVar(&f.warmup, "warmup", 0, "first revisions not counted (default 10)")
	fs.IntVar(&f.rounds, "rounds", 0, "rounds of the copy comparison (default 5)")
	fs.IntVar(&f.copyLayers, "copy-layers", 0, "layers per platform of the copied image (default 8)")
	fs.StringVar(&f.copySize, "copy-layer-size", "", "size of each of those layers, e.g. 8MiB (default 8MiB)")
	fs.IntVar(&f.events, "ingest-events", 0, "events posted at each concurrency (default 3000)")
	fs.StringVar(&f.senders, "ingest-senders", "", "concurrent senders, comma-separated (default 1,8,64)")
	fs.IntVar(&f.rssLayers, "rss-layers", 0, "layers of the image of the RSS measurement (default 16)")
	fs.StringVar(&f.rssSize, "rss-layer-size", "", "size of each of those layers (default 64MiB)")
	fs.StringVar(&f.profile, "profile", "", "write CPU profiles of the daemon (latency.pprof, ingest-N.pprof) to this directory, for go tool pprof")
	fs.IntVar(&f.profileSecs, "profile-seconds", 0, "length of each profile (default 10)")
	return f
}

// config is the benchmark's config: the base one with the flags given on fs applied, the
// promoter to measure and the tools found.
func (f *benchFlags) config(fs *flag.FlagSet) (bench.Config, error) {
	cfg := bench.Defaults()
	if f.quick {
		cfg = bench.Quick()
	}
	set := f.setters(&cfg)
	var errs []string
	fs.Visit(func(fl *flag.Flag) {
		if apply, ok := set[fl.Name]; ok {
			if err := apply(); err != nil {
				errs = append(errs, fmt.Sprintf("--%s: %v", fl.Name, err))
			}
		}
	})
	if len(errs) > 0 {
		return cfg, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	cfg.Promoter = f.promoter
	cfg.Progress = os.Stderr
	var err error
	if cfg.Tools, err = bench.FindTools(f.tools); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// setters set the field of cfg that each flag of a size or count changes.
func (f *benchFlags) setters(cfg *bench.Config) map[string]func() error {
	var err error
	return map[string]func() error{
		"storage":         func() error { cfg.Storage = f.storage; return nil },
		"disk-dir":        func() error { cfg.DiskDir = f.diskDir; return nil },
		"revisions":       func() error { cfg.Revisions = f.revisions; return nil },
		"warmup":          func() error { cfg.Warmup = f.warmup; return nil },
		"rounds":          func() error { cfg.Rounds = f.rounds; return nil },
		"copy-layers":     func() error { cfg.CopyLayers = f.copyLayers; return nil },
		"copy-layer-size": func() error { cfg.CopyLayerSize, err = parseSize(f.copySize); return err },
		"ingest-events":   func() error { cfg.IngestEvents = f.events; return nil },
		"ingest-senders":  func() error { cfg.IngestSenders, err = parseInts(f.senders); return err },
		"rss-layers":      func() error { cfg.RSSLayers = f.rssLayers; return nil },
		"rss-layer-size":  func() error { cfg.RSSLayerSize, err = parseSize(f.rssSize); return err },
		"profile":         func() error { cfg.ProfileDir = f.profile; return nil },
		"profile-seconds": func() error { cfg.ProfileSeconds = f.profileSecs; return nil },
	}
}

// toolDir is where hack/tools.sh installs: $PROMOTER_TOOLS, else ~/.cache/promoter/bin.
func toolDir() string {
	if d := os.Getenv("PROMOTER_TOOLS"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "promoter", "bin")
	}
	return ""
}

// parseSize reads 512, 64KiB, 8MiB or 1GiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.n
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q: want a positive size such as 8MiB", s)
	}
	return n * mult, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q: want comma-separated counts such as 1,8,64", s)
		}
		out = append(out, n)
	}
	return out, nil
}
