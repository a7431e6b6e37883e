package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// OpenSQLite opens (creating) the SQLite database file at path the way every
// Obol SQLite backend wants it: WAL, full synchronous commits, foreign keys
// on, writers taking the lock at BEGIN, a 10 s busy timeout, at most 4
// connections. It then applies the migrations in dir of fsys.
//
// The file is the owner's only (0600), and so are its -wal and -shm files
// (SQLite gives them the database file's mode); a file left 0644 by an
// older version is tightened on open. The embedded default's databases
// hold tokens, payments and ledgers.
func OpenSQLite(ctx context.Context, path string, fsys fs.FS, dir string) (*sql.DB, error) {
	if err := ownerOnly(path); err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	for _, side := range []string{path + "-wal", path + "-shm"} {
		if err := os.Chmod(side, sqliteFileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			db.Close()
			return nil, fmt.Errorf("sqlite %s: %w", side, err)
		}
	}
	if err := SQLite(ctx, db, fsys, dir); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// sqliteFileMode is the mode of every SQLite file Obol creates.
const sqliteFileMode = 0o600

// ownerOnly creates the database file 0600 if it is missing (so SQLite
// does not create it under the umask), and tightens an existing file, and
// its -wal and -shm files, to 0600.
func ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, sqliteFileMode)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, sqliteFileMode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// SQLite applies the migrations in dir of fsys that are not yet recorded in
// schema_migrations, each in its own transaction (SQLite's writer lock keeps
// concurrent starters apart).
func SQLite(ctx context.Context, db *sql.DB, fsys fs.FS, dir string) error {
	ms, err := Load(fsys, dir)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
			_ = tx.Rollback()
			return err
		}
		if n == 0 {
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("migrate %s: %w", m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, m.Version, m.Name, time.Now().UTC().Format(time.RFC3339)); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}
