package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	paystore "github.com/obolpay/obol/proxy/store"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	paysqlite "github.com/obolpay/obol/proxy/store/sqlite"
)

func newGatewayCmd() *cobra.Command {
	return group("gateway", "Operate the gateway", group("outbox",
		"Ledger events waiting in the gateway's outbox; requeue the dead ones (refused by the ledger for good) once their cause is fixed",
		newGatewayOutboxListCmd(), newGatewayOutboxRetryCmd()))
}

// outboxCmd is a gateway outbox verb on the gateway's database
// (config.GatewayDB) with its own flags, added by the caller.
func outboxCmd(use, short string, args cobra.PositionalArgs, do func(ctx context.Context, cmd *cobra.Command, args []string, st *paystore.Store) error) *cobra.Command {
	return loadCmd(&cobra.Command{Use: use, Short: short, Args: args}, func(cmd *cobra.Command, args []string, c config.GatewayDB) error {
		st, err := openGatewayDB(cmd.Context(), c, cmd.Flags().Changed("data-dir"))
		if err != nil {
			return err
		}
		defer st.Close()
		return do(cmd.Context(), cmd, args, st)
	})
}

// openGatewayDB opens the gateway's PostgreSQL database (--postgres-url,
// OBOL_GATEWAY_POSTGRES_URL) unless --data-dir was given, else obol dev's
// gateway.db in --data-dir (default .obol).
func openGatewayDB(ctx context.Context, c config.GatewayDB, dataDirGiven bool) (*paystore.Store, error) {
	if c.PostgresURL != "" && !dataDirGiven {
		return paypg.OpenMode(ctx, c.PostgresURL, migrate.Off) // no DDL: obol migrate gateway applies the schema
	}
	path := filepath.Join(c.DataDir, "gateway.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("the gateway database is required: no obol dev gateway database at %s (pass the --data-dir of obol dev, or --postgres-url / OBOL_GATEWAY_POSTGRES_URL)", path)
	}
	return paysqlite.Open(ctx, path)
}
