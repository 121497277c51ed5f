// Command promoter receives registry and source events, dispatches rootless builds, merges
// per-arch images into multi-arch indexes, signs and promotes them. Each operation is also
// a crane-like subcommand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "promoter:", err)
		os.Exit(1)
	}
}
