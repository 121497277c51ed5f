package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/promoter-dev/promoter/internal/registry"
)

// globalOptions are the flags every subcommand shares.
type globalOptions struct {
	logLevel string
	insecure bool
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "promoter",
		Short: "Merge, sign and promote multi-arch images from registry events",
		Long: `promoter turns "source changed" into "signed multi-arch image, promoted to every
production registry": it receives registry notifications and source webhooks, dispatches
rootless builders, merges per-arch images into one OCI index, signs it and copies it with
its signatures to each destination. Each step is also a subcommand.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&g.insecure, "insecure", false, "allow plain HTTP to every registry (loopback and private addresses always allow it)")

	// commands: one line each, in help order.
	root.AddCommand(newVersionCmd())
	root.AddCommand(newDevCmd(g))
	root.AddCommand(newServeCmd(g))
	root.AddCommand(newBuilderCmd(g))
	root.AddCommand(newStatusCmd(g))
	root.AddCommand(newMergeCmd(g))
	root.AddCommand(newSignCmd(g))
	root.AddCommand(newVerifyCmd(g))
	root.AddCommand(newKeygenCmd(g))
	root.AddCommand(newPromoteCmd(g))
	root.AddCommand(newPlanCmd(g))
	return root
}

// registry is the registry client of a CLI command. One command makes many requests to
// the same repositories (a promotion reads and writes dozens of manifests), so it
// authenticates to each once.
func (g *globalOptions) registry() registry.Client {
	return registry.Client{InsecureAll: g.insecure}.Reusing(0)
}

// logger writes human-readable logs to w (stderr for CLI commands).
func (g *globalOptions) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, g.logLevel, "text")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}
