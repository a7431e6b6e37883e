package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/store/sqlite"
	"github.com/obolpay/obol/vault/vaultd"
)

// openStore opens the production database when a URL is given (applying
// pending migrations with migrate auto; with off it runs no DDL, for the
// read-only audit verbs and their obol-auditor role), else the `obol dev`
// data dir's, which must exist: a mistyped --data-dir (an existing
// directory that is not obol dev's) would otherwise get a new, empty vault
// database, and a merchant created there has keys no obol dev knows.
func openStore(ctx context.Context, pgURL, dataDir string, mode migrate.Mode) (store.Store, error) {
	if pgURL != "" {
		return postgres.Open(ctx, pgURL, postgres.Options{MaxConns: 4, Migrate: mode})
	}
	path := filepath.Join(dataDir, vaultd.DBFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no obol dev vault database at %s (pass the --data-dir of obol dev, or run obol dev first, or --postgres-url / OBOL_VAULT_POSTGRES_URL for the vault's PostgreSQL database)", path)
	}
	return sqlite.Open(ctx, path)
}

func newAuditCmd() *cobra.Command {
	return group("audit", "List and verify the vault's audit trail", newAuditListCmd(), newAuditVerifyCmd())
}
