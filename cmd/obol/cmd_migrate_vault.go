package main

import (
	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	vaultpg "github.com/obolpay/obol/vault/store/postgres"
)

func newMigrateVaultCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "vault",
		Short: "Apply vaultd's schema migrations to its database (--postgres-url or OBOL_VAULT_POSTGRES_URL)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.MigrateVault) error {
		return schemaDB{name: "vault", env: "OBOL_VAULT_POSTGRES_URL", migrate: vaultpg.MigrateURL, version: vaultpg.Version}.run(cmd, c.PostgresURL, c.Check)
	})
}
