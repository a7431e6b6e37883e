package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Mode is how a daemon treats its schema at start (OBOL_MIGRATE).
type Mode string

const (
	// Auto applies pending migrations at start (the daemon needs DDL
	// rights). The zero Mode is Auto.
	Auto Mode = "auto"
	// Off never runs DDL: the daemon checks the schema's version and
	// refuses to start when it is behind (obol migrate applies it).
	Off Mode = "off"
)

// ParseMode reads an OBOL_MIGRATE value ("" is Auto).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Auto:
		return Auto, nil
	case Off:
		return Off, nil
	}
	return "", fmt.Errorf("migrate mode %q: want auto or off", s)
}

// ErrSchemaBehind: the database's schema lacks migrations this binary
// needs (and the daemon was told not to apply them).
var ErrSchemaBehind = errors.New("database schema is behind this binary")

// BehindError says how far behind a schema is and what applies the rest.
type BehindError struct {
	Have, Want int
	// Command applies the missing migrations, e.g. "obol migrate vault".
	Command string
}

func (e *BehindError) Error() string {
	return fmt.Sprintf("database schema is at version %d, this binary needs %d: run `%s` (as the database's owner), or start with --migrate=auto (OBOL_MIGRATE=auto) and DDL rights", e.Have, e.Want, e.Command)
}

// Unwrap makes errors.Is(err, ErrSchemaBehind) hold.
func (e *BehindError) Unwrap() error { return ErrSchemaBehind }

// ErrForeignSchema: the database's recorded migrations are not this
// binary's: it holds another service's schema (every schema records its
// versions in schema_migrations, so without this check a database migrated
// for one service looked up to date to every other).
var ErrForeignSchema = errors.New("the database holds another schema")

// ForeignError names the first recorded migration that is not this
// binary's.
type ForeignError struct {
	Version        int
	Recorded, Mine string
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("%v: its migration %d is %s, this binary's is %s (is the URL another service's database?)", ErrForeignSchema, e.Version, e.Recorded, e.Mine)
}

// Unwrap makes errors.Is(err, ErrForeignSchema) hold.
func (e *ForeignError) Unwrap() error { return ErrForeignSchema }

// Querier is a pgx connection or pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PostgresVersion returns the schema version recorded in
// schema_migrations (the highest version applied with every one below it;
// 0 for a database never migrated) and the version the migrations in dir
// of fsys reach.
func PostgresVersion(ctx context.Context, db Querier, fsys fs.FS, dir string) (have, want int, err error) {
	ms, err := Load(fsys, dir)
	if err != nil {
		return 0, 0, err
	}
	want = len(ms)
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	// Versions start at 1 with no gaps, so the count of applied versions
	// up to want is the version reached; each must be this binary's.
	var foreign *int
	err = db.QueryRow(ctx, `SELECT count(*), min(version) FILTER (WHERE name <> ($2::text[])[version]) FROM schema_migrations WHERE version BETWEEN 1 AND $1`, want, names).Scan(&have, &foreign)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: never migrated
		return 0, want, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("schema version: %w", err)
	}
	if foreign != nil {
		return 0, 0, foreignAt(ctx, db, ms[*foreign-1])
	}
	return have, want, nil
}

// foreignAt is the ForeignError for m, whose version the database records
// under another name.
func foreignAt(ctx context.Context, db Querier, m Migration) error {
	var recorded string
	if err := db.QueryRow(ctx, `SELECT name FROM schema_migrations WHERE version = $1`, m.Version).Scan(&recorded); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	return &ForeignError{Version: m.Version, Recorded: recorded, Mine: m.Name}
}

// CheckPostgres runs no DDL: it returns a *BehindError naming command when
// the database lacks a migration in dir of fsys.
func CheckPostgres(ctx context.Context, db Querier, fsys fs.FS, dir, command string) error {
	have, want, err := PostgresVersion(ctx, db, fsys, dir)
	if err != nil {
		return err
	}
	if have < want {
		return &BehindError{Have: have, Want: want, Command: command}
	}
	return nil
}
