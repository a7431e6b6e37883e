package main

import (
	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	eventstore "github.com/obolpay/obol/ledger/events/store"
)

func newMigrateEventsCmd() *cobra.Command {
	return loadCmd(&cobra.Command{
		Use:   "events",
		Short: "Apply eventsd's schema migrations to its database (--postgres-url or OBOL_EVENTS_POSTGRES_URL)",
		Args:  cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string, c config.MigrateEvents) error {
		return schemaDB{name: "events", env: "OBOL_EVENTS_POSTGRES_URL", migrate: eventstore.MigrateURL, version: eventstore.Version}.run(cmd, c.PostgresURL, c.Check)
	})
}
