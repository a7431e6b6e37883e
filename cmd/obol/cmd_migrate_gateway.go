package main

import (
	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
)

func newMigrateGatewayCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "gateway",
		Short: "Apply gatewayd's schema migrations to its database (--postgres-url or OBOL_GATEWAY_POSTGRES_URL)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.MigrateGateway) error {
		return schemaDB{name: "gateway", env: "OBOL_GATEWAY_POSTGRES_URL", migrate: paypg.MigrateURL, version: paypg.Version}.run(cmd, c.PostgresURL, c.Check)
	})
}
