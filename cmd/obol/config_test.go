package main

import (
	"context"
	"testing"

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
			}, tt.cfg, false, nil)
		})
	}
}
