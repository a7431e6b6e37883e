package main

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/testenv"
	eventstore "github.com/obolpay/obol/ledger/events/store"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	vaultpg "github.com/obolpay/obol/vault/store/postgres"
)

// emptyDB is a fresh database nothing was migrated in.
func emptyDB(t *testing.T) string {
	t.Helper()
	return testenv.SharedPostgres(t).NewDatabase(t, "empty", func(context.Context, string) error { return nil })
}

// TestMigrate: for each daemon's database, a store opened with migrate off
// on an empty database refuses, naming the version and the command; obol
// migrate --check reports it behind; obol migrate applies everything (once:
// a second run changes nothing); then the store opens with migrate off.
func TestMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	closeErr := func(c interface{ Close() error }, err error) error {
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	tests := []struct {
		name    string
		openOff func(url string) error
	}{
		{"vault", func(url string) error {
			st, err := vaultpg.Open(ctx, url, vaultpg.Options{MaxConns: 2, Migrate: migrate.Off})
			return closeErr(st, err)
		}},
		{"gateway", func(url string) error {
			st, err := paypg.OpenMode(ctx, url, migrate.Off)
			return closeErr(st, err)
		}},
		{"ledger", func(url string) error {
			st, err := ledgerpg.OpenMode(ctx, url, migrate.Off)
			return closeErr(st, err)
		}},
		{"events", func(url string) error {
			st, err := eventstore.OpenPostgresMode(ctx, url, migrate.Off)
			return closeErr(st, err)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := emptyDB(t)
			err := tt.openOff(url)
			require.ErrorIs(t, err, migrate.ErrSchemaBehind)
			var be *migrate.BehindError
			require.True(t, errors.As(err, &be))
			assert.Equal(t, 0, be.Have)
			assert.Positive(t, be.Want)
			assert.ErrorContains(t, err, "database schema is at version 0, this binary needs")
			assert.ErrorContains(t, err, "run `obol migrate "+tt.name+"`")

			var out bytes.Buffer
			err = run(ctx, []string{"migrate", tt.name, "--check", "--postgres-url", url}, &out)
			require.ErrorIs(t, err, migrate.ErrSchemaBehind, "--check on an empty database")
			assert.Contains(t, out.String(), "schema at version 0")

			out.Reset()
			require.NoError(t, run(ctx, []string{"migrate", tt.name, "--postgres-url", url}, &out))
			assert.Contains(t, out.String(), "migrated from version 0 to")
			out.Reset()
			require.NoError(t, run(ctx, []string{"migrate", tt.name, "--postgres-url", url}, &out))
			assert.Contains(t, out.String(), "up to date")
			out.Reset()
			require.NoError(t, run(ctx, []string{"migrate", tt.name, "--check", "--postgres-url", url}, &out))

			require.NoError(t, tt.openOff(url), "migrate off after obol migrate")
		})
	}
	t.Run("the URL is required", func(t *testing.T) {
		t.Setenv("OBOL_LEDGER_POSTGRES_URL", "")
		err := run(ctx, []string{"migrate", "ledger"}, &bytes.Buffer{})
		require.ErrorContains(t, err, "OBOL_LEDGER_POSTGRES_URL")
	})
}
