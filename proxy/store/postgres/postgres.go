// Package postgres opens the gateway's payment store (proxy/store)
// on PostgreSQL through pgx: migrations applied under an advisory lock,
// a pooled database, or a read-only one for the reconciliation. No card
// data. PCI zone (the gateway's).
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/proxy/store"
)

// migrationLock is the advisory lock that serialises the gateway's
// migrations between replicas starting together.
const migrationLock = 727275003

// MigrateURL migrates the PostgreSQL database at url.
func MigrateURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return migrate.Postgres(ctx, conn, store.Migrations, "migrations", migrationLock)
}

// MigrateCommand applies this database's migrations.
const MigrateCommand = "obol migrate gateway"

// Check runs no DDL: a *migrate.BehindError when a migration is missing.
func Check(ctx context.Context, db migrate.Querier) error {
	return migrate.CheckPostgres(ctx, db, store.Migrations, "migrations", MigrateCommand)
}

// Version is the schema's version and the one this binary needs.
func Version(ctx context.Context, db migrate.Querier) (have, want int, err error) {
	return migrate.PostgresVersion(ctx, db, store.Migrations, "migrations")
}

// Open migrates and opens the gateway database.
func Open(ctx context.Context, url string) (*store.Store, error) {
	return OpenMode(ctx, url, migrate.Auto)
}

// OpenMode opens the gateway database, migrating it (Auto) or only
// checking that its schema is current (Off: no DDL).
func OpenMode(ctx context.Context, url string, mode migrate.Mode) (*store.Store, error) {
	var err error
	if mode == migrate.Off {
		err = checkURL(ctx, url, Check)
	} else {
		err = MigrateURL(ctx, url)
	}
	if err != nil {
		return nil, fmt.Errorf("gateway postgres: %w", err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("gateway postgres url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	return store.NewPipelined(db, rolledBack), nil
}

// rolledBack reports whether a failed COMMIT was answered by the server
// with an ERROR (a deferred constraint, a serialization failure):
// PostgreSQL then rolled the transaction back. Without such an answer (a
// connection lost during COMMIT, a FATAL at shutdown) the outcome is
// unknown.
func rolledBack(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Severity == "ERROR"
}

func checkURL(ctx context.Context, url string, check func(context.Context, migrate.Querier) error) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return check(ctx, conn)
}

// OpenReadOnly opens the gateway database for reading only: no migration,
// and every transaction read-only (default_transaction_read_only).
func OpenReadOnly(ctx context.Context, url string) (*store.Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("gateway postgres url: %w", err)
	}
	// Set once the connection is up, not as a startup parameter: with
	// target_session_attrs=read-write (the multi-host URLs of a primary
	// and its standby) pgx checks the session it opened, and a session
	// read-only from its start would look like a standby on every host.
	db := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET default_transaction_read_only = on")
		return err
	}))
	if err := ping(ctx, db); err != nil {
		return nil, err
	}
	return store.New(db), nil
}

func ping(ctx context.Context, db *sql.DB) error {
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("gateway postgres: %w", err)
	}
	return nil
}
