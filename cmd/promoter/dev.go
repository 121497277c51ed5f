//go:build dev

package main

import (
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/promoter-dev/promoter/internal/dev"
)

type devOptions struct {
	listen  string
	dataDir string
	source  string
	demo    bool
	timeout time.Duration
}

// newDevCmd is `promoter dev`, in a binary built with -tags dev (devHowTo): the in-process
// registries it runs are a distribution registry server, which the binary that runs
// `serve` (the released image) does not carry.
func newDevCmd(g *globalOptions) *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything on this machine: embedded NATS, two registries, local builder, example pipeline",
		Long: `Run the whole flow on loopback with nothing installed: an embedded NATS JetStream, a
staging and a production registry (real distribution registries) whose notifications are
wired to the daemon, a freshly generated cosign key pair, the local builder (no
privileges, no container runtime) and an example pipeline. Its source is embedded in the
binary (examples/hello in the repository) and written to --data-dir, so it runs from any
directory; --source builds a directory of your own instead.

With --demo it sends a source change itself, prints each stage as it happens (build per
platform, push, merge, sign, promote) and exits 0 once the promoted index verifies with
the generated public key. Without it, it prints commands to try and runs until Ctrl-C.

The generated configuration (promoter.yaml), keys, registry storage, the example source
and the daemon's log (promoter.log, named in the banner) are kept in --data-dir; a fresh
temporary directory is used when it is empty. --log-level sends the daemon's log to stderr
instead, at that level.

` + devHowTo,
		Example: `  go run -tags dev ./cmd/promoter dev --demo
  promoter dev --listen 127.0.0.1:8080 --data-dir ./.promoter-dev
  promoter dev --source ./my-site`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []dev.Option{dev.WithListen(o.listen), dev.WithSource(o.source), dev.WithOutput(cmd.OutOrStdout())}
			// The daemon's log goes to the data dir's promoter.log, so the terminal shows
			// only the stages; --log-level sends it to stderr instead, at that level.
			if cmd.Flags().Changed("log-level") {
				log, err := g.logger(cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				opts = append(opts, dev.WithLogger(log))
			}
			if o.dataDir != "" {
				dir, err := filepath.Abs(o.dataDir)
				if err != nil {
					return err
				}
				opts = append(opts, dev.WithDataDir(dir))
			}
			if o.demo {
				opts = append(opts, dev.WithDemo(o.timeout))
			}
			return dev.Run(cmd.Context(), opts...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", dev.DefaultListen, "daemon address (webhooks, status); port 0 picks a free one")
	f.StringVar(&o.dataDir, "data-dir", "", "where registries, JetStream, keys, the generated config and the example source live (default: a new temp dir)")
	f.StringVar(&o.source, "source", "", "source tree of the example pipeline (default: the embedded examples/hello, written to --data-dir)")
	f.BoolVar(&o.demo, "demo", false, "trigger a source change, print each stage and exit once the promoted index verifies")
	f.DurationVar(&o.timeout, "timeout", dev.DefaultTimeout, "with --demo, how long to wait for the promotion")
	return cmd
}
