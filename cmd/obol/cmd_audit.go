package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/store/sqlite"
	"github.com/obolpay/obol/vault/vaultd"
)

// openStore opens the production database when a URL is given, else the
// `obol dev` data dir.
func openStore(ctx context.Context, pgURL, dataDir string) (store.Store, error) {
	if pgURL != "" {
		return postgres.Open(ctx, pgURL, postgres.Options{MaxConns: 4})
	}
	if _, err := os.Stat(dataDir); err != nil {
		return nil, fmt.Errorf("data dir %s: %w (run `obol dev` first, or pass --postgres-url)", dataDir, err)
	}
	return sqlite.Open(ctx, filepath.Join(dataDir, vaultd.DBFile))
}

func newAuditCmd() *cobra.Command {
	return group("audit", "List and verify the vault's audit trail", newAuditListCmd(), newAuditVerifyCmd())
}
