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

// OutboxAfter lists the queued ledger events in id order, after the cursor
// id (at most limit).
func (s *Store) OutboxAfter(ctx context.Context, after string, limit int) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, payment_id, request, attempts FROM ledger_outbox WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		if err := rows.Scan(&e.ID, &e.PaymentID, &e.Request, &e.Attempts); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
