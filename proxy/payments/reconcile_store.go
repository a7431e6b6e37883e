package payments

import (
	"context"
	"database/sql"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Read-only access for the reconciliation with the ledger (proxy/reconcile).

// OpenPostgresReadOnly opens the gateway database for reading only: no
// migration, and every transaction read-only (default_transaction_read_only).
func OpenPostgresReadOnly(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("gateway postgres url: %w", err)
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	db := stdlib.OpenDB(*cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway postgres: %w", err)
	}
	return &Store{db: db, postgres: true}, nil
}

// OpenSQLiteReadOnly opens an existing embedded-default database for
// reading only (query_only), next to a running obol dev.
func OpenSQLiteReadOnly(ctx context.Context, path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("gateway database: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("gateway database %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway database %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// PaymentsAfter lists every merchant's payments in id order, after the
// cursor id (at most limit).
func (s *Store) PaymentsAfter(ctx context.Context, after string, limit int) ([]*Payment, error) {
	return s.payments(ctx, `SELECT `+paymentCols+` FROM payments WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
}

// OutboxAfter lists the ledger outbox (pending and dead entries) in id
// order, after the cursor id (at most limit).
func (s *Store) OutboxAfter(ctx context.Context, after string, limit int) ([]OutboxEntry, error) {
	return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
}
