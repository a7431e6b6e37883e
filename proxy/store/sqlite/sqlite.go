// Package sqlite opens the gateway's payment store (proxy/store)
// on SQLite (modernc.org/sqlite, pure Go) for the embedded default: WAL,
// full synchronous commits, owner-only files; or read-only, next to a
// running obol dev. No card data. PCI zone (the gateway's).
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/proxy/store"
)

// Open opens (creating and migrating) the database file at path.
func Open(ctx context.Context, path string) (*store.Store, error) {
	db, err := migrate.OpenSQLite(ctx, path, store.Migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return store.New(db), nil
}

// OpenReadOnly opens an existing database for reading only (query_only),
// next to a running obol dev.
func OpenReadOnly(ctx context.Context, path string) (*store.Store, error) {
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
	return store.New(db), nil
}
