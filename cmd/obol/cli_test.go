package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// commands lists every command of the tree under c.
func commands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		out = append(out, commands(s)...)
	}
	return out
}

// TestEveryCommandHelp: -h and --help succeed (status 0) on every
// command, and print its usage with its flags.
func TestEveryCommandHelp(t *testing.T) {
	cmds := commands(newRoot(&bytes.Buffer{}))
	require.Greater(t, len(cmds), 20)
	for _, c := range cmds {
		path := strings.Fields(c.CommandPath())[1:]
		for _, h := range []string{"-h", "--help"} {
			t.Run(strings.Join(append(path, h), " "), func(t *testing.T) {
				var out bytes.Buffer
				require.NoError(t, run(context.Background(), append(append([]string{}, path...), h), &out))
				assert.Contains(t, out.String(), "Usage:")
			})
		}
	}
}

// TestEachVerbHasOnlyItsOwnFlags: a flag of another verb is refused.
func TestEachVerbHasOnlyItsOwnFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"keys status takes no --destroy", []string{"keys", "status", "--destroy"}, "unknown flag: --destroy"},
		{"keys rewrap takes no --deks", []string{"keys", "rewrap", "--deks"}, "unknown flag: --deks"},
		{"audit list takes no --vault-addr", []string{"audit", "list", "--vault-addr", "http://x"}, "unknown flag: --vault-addr"},
		{"payouts list takes no --merchant", []string{"payouts", "list", "--merchant", "m"}, "unknown flag: --merchant"},
		{"gateway outbox list takes no --all", []string{"gateway", "outbox", "list", "--all"}, "unknown flag: --all"},
		{"single-dash long flags are not flags", []string{"ledger", "verify", "-data-dir", "x"}, "unknown shorthand flag"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate" for "obol"`},
		{"unknown subcommand", []string{"keys", "frobnicate"}, `unknown command "frobnicate" for "obol keys"`},
		{"missing subcommand", []string{"payouts"}, "obol payouts: a subcommand is required"},
		{"unexpected argument", []string{"ledger", "verify", "stray"}, `unknown command "stray" for "obol ledger verify"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, &bytes.Buffer{})
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestURLFlagWithPasswordRefused: a database URL that carries a password
// is refused as a flag (it would show in process listings), naming the
// variable to use, without repeating the password.
func TestURLFlagWithPasswordRefused(t *testing.T) {
	err := run(context.Background(), []string{"ledger", "verify", "--postgres-url", "postgres://obol:hunter22@127.0.0.1:1/ledger"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "--postgres-url: the URL carries a password")
	require.ErrorContains(t, err, "OBOL_LEDGER_POSTGRES_URL")
	require.NotContains(t, err.Error(), "hunter22")
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(context.Background(), []string{"completion", shell}, &out))
			assert.Contains(t, out.String(), "obol")
			assert.Greater(t, out.Len(), 500)
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"version"}, &out))
	assert.Contains(t, out.String(), "go1.")
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"clean commit", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			true, "obol v1.2.3\ncommit abc123 2026-12-01T10:00:00Z\ngo1.26.0"},
		{"dirty tree", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
			true, "obol (devel)\ncommit abc123-dirty\ngo1.26.0"},
		{"built without VCS stamping", &debug.BuildInfo{GoVersion: "go1.26.0"}, true, "obol (devel)\ncommit unknown\ngo1.26.0"},
		{"no build information", nil, false, "obol (no build information)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, versionText(tt.bi, tt.ok))
		})
	}
}
