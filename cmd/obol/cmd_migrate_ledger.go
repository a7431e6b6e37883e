package main

import (
	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
)

func newMigrateLedgerCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "ledger",
		Short: "Apply ledgerd's schema migrations to its database (--postgres-url or OBOL_LEDGER_POSTGRES_URL)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.MigrateLedger) error {
		return schemaDB{name: "ledger", env: "OBOL_LEDGER_POSTGRES_URL", migrate: ledgerpg.MigrateURL, version: ledgerpg.Version}.run(cmd, c.PostgresURL, c.Check)
	})
}
