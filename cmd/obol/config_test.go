package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: for obol dev and every verb that reads OBOL_* variables, -h
// succeeds and lists every variable (never a secret's value), and a bad
// flag value, an unknown flag or a password in a URL flag is refused
// naming the flag (see clitest.Config).
func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		verb []string
		cfg  any
	}{
		{"dev", []string{"dev"}, &config.Dev{}},
		{"merchants create", []string{"merchants", "create"}, &config.VaultDB{}},
		{"audit list", []string{"audit", "list"}, &config.VaultDB{}},
		{"audit verify", []string{"audit", "verify"}, &config.AuditVerify{}},
		{"keys status", []string{"keys", "status"}, &config.Keys{}},
		{"keys rewrap", []string{"keys", "rewrap"}, &config.Keys{}},
		{"vault setup", []string{"vault", "setup"}, &config.VaultSetup{}},
		{"ledger balances", []string{"ledger", "balances"}, &config.LedgerClient{}},
		{"ledger verify", []string{"ledger", "verify"}, &config.LedgerDB{}},
		{"ledger reconcile", []string{"ledger", "reconcile"}, &config.Reconcile{}},
		{"reconcile", []string{"reconcile"}, &config.Reconcile{}},
		{"payouts run", []string{"payouts", "run"}, &config.LedgerClient{}},
		{"payouts list", []string{"payouts", "list"}, &config.LedgerClient{}},
		{"gateway outbox list", []string{"gateway", "outbox", "list"}, &config.GatewayDB{}},
		{"events list", []string{"events", "list"}, &config.EventsClient{}},
		{"listen", []string{"listen"}, &config.EventsClient{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clitest.Config(t, func(ctx context.Context, args []string) error {
				return run(ctx, append(append([]string{}, tt.verb...), args...), cli.UsageOutput)
			}, tt.cfg, "", nil)
		})
	}
}

// TestVerbsWarnAboutUnknownVariables: an admin verb names, on stderr, an
// OBOL_* variable no binary reads (a typo was silently ignored; only the
// daemons and obol dev warned), never its value.
func TestVerbsWarnAboutUnknownVariables(t *testing.T) {
	t.Setenv("OBOL_LEDGR_ADDR", "s3cret-value")
	tests := []struct {
		name string
		args []string
	}{
		{"ledger verify", []string{"ledger", "verify"}},
		{"payouts list", []string{"payouts", "list"}},
		{"gateway outbox list", []string{"gateway", "outbox", "list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRoot(&out)
			root.SetErr(&errOut)
			root.SetArgs(append(tt.args, "--data-dir", t.TempDir()))
			require.Error(t, root.ExecuteContext(context.Background()), "no obol dev in the data dir")
			assert.Contains(t, errOut.String(), "ignoring OBOL_* variables that no Obol binary reads")
			assert.Contains(t, errOut.String(), "OBOL_LEDGR_ADDR")
			assert.NotContains(t, errOut.String()+out.String(), "s3cret-value")
		})
	}
}

// TestFlagErrorsNeverRepeatWhatWasTyped: cobra's flag errors pass through
// cli.FlagError, so a secret typed after a wrong flag is not repeated.
func TestFlagErrorsNeverRepeatWhatWasTyped(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown shorthand", []string{"payouts", "list", "-Xs3cret"}, "unknown shorthand flag: 'X'"},
		{"bad syntax", []string{"ledger", "verify", "---postgres-url=s3cret"}, "bad flag syntax"},
		{"bad number", []string{"audit", "list", "--limit", "s3cret"}, "--limit: the value does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out)
			require.ErrorContains(t, err, tt.want)
			assert.NotContains(t, err.Error()+out.String(), "s3cret")
		})
	}
}
