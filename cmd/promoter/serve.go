package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/promoter-dev/promoter/internal/config"
	"github.com/promoter-dev/promoter/internal/daemon"
)

type serveOptions struct {
	configFile string
}

func newServeCmd(g *globalOptions) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: webhook receivers, merge, sign and promote",
		Long: `Run the daemon. It serves the webhook receivers, /healthz and /readyz on --listen,
Prometheus metrics on --metrics and the status page and API on --status (loopback by default), connects to NATS (or starts an embedded JetStream server in
--data-dir when nats.url is empty), and works through registry and source events. A
pipeline with source.poll set has its branch head listed (as git ls-remote would, in Go:
no git binary is needed) on start and at that interval, so a lost source webhook delays a
build by at most that long.

Configuration comes from --config (YAML), PROMOTER_* environment variables and flags, in
increasing order of precedence. An invalid configuration exits non-zero before any port is
opened, listing every problem with its path.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(config.Input{File: o.configFile, Flags: map[string]*pflag.Flag{
				"listen":              cmd.Flags().Lookup("listen"),
				"metrics":             cmd.Flags().Lookup("metrics"),
				"status":              cmd.Flags().Lookup("status"),
				"dataDir":             cmd.Flags().Lookup("data-dir"),
				"nats.url":            cmd.Flags().Lookup("nats-url"),
				"auth.insecureNoAuth": cmd.Flags().Lookup("insecure-no-auth"),
				"logLevel":            cmd.Root().PersistentFlags().Lookup("log-level"),
			}})
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
			if err != nil {
				return err
			}
			return daemon.Run(cmd.Context(), cfg, daemon.WithLogger(log))
		},
	}
	cmd.Flags().StringVarP(&o.configFile, "config", "c", "", "YAML configuration file")
	cmd.Flags().String("listen", config.DefaultString("listen"), "address of the webhook, /healthz and /readyz server (listen)")
	cmd.Flags().String("metrics", config.DefaultString("metrics"), "address of the /metrics server, empty to disable (metrics)")
	cmd.Flags().String("status", config.DefaultString("status"), "address of the status page (/) and API (/v1/revisions), keep it private; empty to disable (status)")
	cmd.Flags().String("data-dir", config.DefaultString("dataDir"), "directory of the embedded NATS store (dataDir)")
	cmd.Flags().String("nats-url", "", "NATS server URLs; empty starts an embedded server (nats.url)")
	cmd.Flags().Bool("insecure-no-auth", false, "accept registry notifications without a bearer token: development only (auth.insecureNoAuth)")
	return cmd
}
