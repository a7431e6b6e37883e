// Package storetest opens fresh event stores for tests: on SQLite, and on
// the shared test PostgreSQL (internal/testenv). Test-only. PAN-free.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/store"
)

// SQLite opens a fresh SQLite store in t's temporary directory, closed when
// t ends.
func SQLite(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "events.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// Postgres opens a store on a fresh database of the shared test PostgreSQL,
// closed when t ends; skipped with -short.
func Postgres(t *testing.T) *store.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "events", store.MigrateURL)
	s, err := store.OpenPostgres(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// Backends opens one fresh store per backend, by name, so that a test runs
// on both.
func Backends() map[string]func(t *testing.T) *store.Store {
	return map[string]func(t *testing.T) *store.Store{"sqlite": SQLite, "postgres": Postgres}
}
