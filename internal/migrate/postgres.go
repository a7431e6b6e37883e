package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is a pgx connection or pool.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Postgres applies the migrations in dir of fsys that are not yet recorded
// in schema_migrations, each in its own transaction, under a transaction-
// scoped advisory lock (lockID), so concurrent starters do not race. A
// version recorded under another name is a *ForeignError (another
// service's database): nothing is applied.
func Postgres(ctx context.Context, db DB, fsys fs.FS, dir string, lockID int64) error {
	ms, err := Load(fsys, dir)
	if err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		// A concurrent creator may win the race on the catalog.
		if _, err2 := db.Exec(ctx, `SELECT 1 FROM schema_migrations LIMIT 1`); err2 != nil {
			return fmt.Errorf("migrate: %w", noDDL(err))
		}
	}
	for _, m := range ms {
		if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			var recorded string
			switch err := tx.QueryRow(ctx, `SELECT name FROM schema_migrations WHERE version = $1`, m.Version).Scan(&recorded); {
			case err == nil && recorded == m.Name:
				return nil // applied
			case err == nil:
				return &ForeignError{Version: m.Version, Recorded: recorded, Mine: m.Name}
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		}); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, noDDL(err))
		}
	}
	return nil
}

// ErrNoDDLRights: the role may not change the schema (PostgreSQL's
// insufficient_privilege while migrating).
var ErrNoDDLRights = errors.New("this database role may not change the schema: apply it with obol migrate as the database's owner and start with --migrate=off (OBOL_MIGRATE=off), or give the role DDL rights")

// noDDL names ErrNoDDLRights beside a permission error of PostgreSQL.
func noDDL(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w (%w)", ErrNoDDLRights, err)
	}
	return err
}
