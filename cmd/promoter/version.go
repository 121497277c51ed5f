package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set by -ldflags "-X main.version=..." in release builds; otherwise the module
// version from the build info is used.
var version = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the promoter version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, commit, goVersion := buildVersion()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "promoter %s\ncommit: %s\ngo: %s\n", v, commit, goVersion)
			return err
		},
	}
}

func buildVersion() (v, commit, goVersion string) {
	v, commit, goVersion = version, "unknown", "unknown"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return orDevel(v), commit, goVersion
	}
	goVersion = info.GoVersion
	if v == "" {
		v = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				commit += "-dirty"
			}
		}
	}
	return orDevel(v), commit, goVersion
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
