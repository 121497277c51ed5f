//go:build !dev

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// errDevNotBuilt is what `promoter dev` returns from a binary built without -tags dev.
var errDevNotBuilt = errors.New("this binary was built without promoter dev\n\n" + devHowTo)

// newDevCmd is `promoter dev` in a binary built without it: any flags and arguments (the
// ones the real command takes) get the message that says how to get it, not "unknown flag".
func newDevCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:                "dev",
		Short:              "Run everything on this machine (in a binary built with -tags dev; this one says how to get it)",
		Long:               "Run the whole flow on loopback: embedded NATS, two registries, the local builder and an example pipeline.\n\n" + devHowTo,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "-h" || a == "--help" {
					return cmd.Help()
				}
			}
			return errDevNotBuilt
		},
	}
}
