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
	var (
		quick       = fs.Bool("quick", false, "every measurement at a size that takes seconds (the figures mean nothing; for checking the bench works)")
		printScript = fs.Bool("print-peers-script", false, "print the script that runs a peer once per destination in parallel, and exit")
		promoter    = fs.String("promoter", "", "promoter binary to measure; empty builds ./cmd/promoter of this tree")
		tools       = fs.String("tools", toolDir(), "directory of registry, crane, regctl, cosign (hack/tools.sh); then PATH (skopeo)")
		out         = fs.String("out", "", "also write the table to this file")
		storage     = fs.String("storage", "", "registry storage: tmpfs (/dev/shm) or disk (--disk-dir) (default tmpfs)")
		diskDir     = fs.String("disk-dir", "", "directory on disk for disk storage and the daemon's NATS store (default $TMPDIR or /tmp)")
		revisions   = fs.Int("revisions", 0, "revisions pushed for the latency figures, warm-up included (default 510)")
		warmup      = fs.Int("warmup", 0, "first revisions not counted (default 10)")
		rounds      = fs.Int("rounds", 0, "rounds of the copy comparison (default 5)")
		copyLayers  = fs.Int("copy-layers", 0, "layers per platform of the copied image (default 8)")
		copySize    = fs.String("copy-layer-size", "", "size of each of those layers, e.g. 8MiB (default 8MiB)")
		events      = fs.Int("ingest-events", 0, "events posted at each concurrency (default 3000)")
		senders     = fs.String("ingest-senders", "", "concurrent senders, comma-separated (default 1,8,64)")
		rssLayers   = fs.Int("rss-layers", 0, "layers of the image of the RSS measurement (default 16)")
		rssSize     = fs.String("rss-layer-size", "", "size of each of those layers (default 64MiB)")
		profile     = fs.String("profile", "", "write CPU profiles of the daemon (latency.pprof, ingest-N.pprof) to this directory, for go tool pprof")
		profileSecs = fs.Int("profile-seconds", 0, "length of each profile (default 10)")
	)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if *printScript {
		fmt.Print(bench.PeersScript())
		return nil
	}
	cfg := bench.Defaults()
	if *quick {
		cfg = bench.Quick()
	}
	var errs []string
	fs.Visit(func(f *flag.Flag) {
		var err error
		switch f.Name {
		case "storage":
			cfg.Storage = *storage
		case "disk-dir":
			cfg.DiskDir = *diskDir
		case "revisions":
			cfg.Revisions = *revisions
		case "warmup":
			cfg.Warmup = *warmup
		case "rounds":
			cfg.Rounds = *rounds
		case "copy-layers":
			cfg.CopyLayers = *copyLayers
		case "copy-layer-size":
			cfg.CopyLayerSize, err = parseSize(*copySize)
		case "ingest-events":
			cfg.IngestEvents = *events
		case "ingest-senders":
			cfg.IngestSenders, err = parseInts(*senders)
		case "rss-layers":
			cfg.RSSLayers = *rssLayers
		case "rss-layer-size":
			cfg.RSSLayerSize, err = parseSize(*rssSize)
		case "profile":
			cfg.ProfileDir = *profile
		case "profile-seconds":
			cfg.ProfileSeconds = *profileSecs
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("--%s: %v", f.Name, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	cfg.Promoter = *promoter
	cfg.Progress = os.Stderr
	var err error
	if cfg.Tools, err = bench.FindTools(*tools); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep.Markdown(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		rep.Markdown(f)
	}
	return nil
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
