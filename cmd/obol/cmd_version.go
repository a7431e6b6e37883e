package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print obol's module version, VCS commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionText(debug.ReadBuildInfo()))
			return nil
		},
	}
}

// versionText describes a build: module version, commit (with "-dirty"
// for uncommitted changes) and commit time, Go version.
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "obol (no build information)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	commit, modified, at := "unknown", "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		case "vcs.time":
			at = " " + s.Value
		}
	}
	return fmt.Sprintf("obol %s\ncommit %s%s%s\n%s", version, commit, modified, at, bi.GoVersion)
}
