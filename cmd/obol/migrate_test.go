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

// TestMigrateRefusesAnotherServicesDatabase: every schema records its
// versions in a table named schema_migrations, so a database migrated for
// one service looked up to date to every other (obol migrate gateway on the
// ledger's URL said "schema at version 4, up to date" and applied nothing;
// a daemon with --migrate=auto or off started on it and failed at its
// first query). Now each service checks the recorded migrations are its
// own: for every pair of services, migrate, --check and opening the store
// (auto and off) on the other's database refuse with ErrForeignSchema,
// naming both migrations, and write nothing.
func TestMigrateRefusesAnotherServicesDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	open := map[string]func(url string, m migrate.Mode) error{
		"vault": func(url string, m migrate.Mode) error {
			st, err := vaultpg.Open(ctx, url, vaultpg.Options{MaxConns: 2, Migrate: m})
			if err == nil {
				st.Close()
			}
			return err
		},
		"gateway": func(url string, m migrate.Mode) error {
			st, err := paypg.OpenMode(ctx, url, m)
			if err == nil {
				st.Close()
			}
			return err
		},
		"ledger": func(url string, m migrate.Mode) error {
			st, err := ledgerpg.OpenMode(ctx, url, m)
			if err == nil {
				st.Close()
			}
			return err
		},
		"events": func(url string, m migrate.Mode) error {
			st, err := eventstore.OpenPostgresMode(ctx, url, m)
			if err == nil {
				st.Close()
			}
			return err
		},
	}
	services := []string{"vault", "gateway", "ledger", "events"}
	for _, owner := range services {
		url := emptyDB(t)
		require.NoError(t, run(ctx, []string{"migrate", owner, "--postgres-url", url}, &bytes.Buffer{}))
		for _, other := range services {
			if other == owner {
				continue
			}
			t.Run(other+" on the "+owner+" database", func(t *testing.T) {
				var out bytes.Buffer
				err := run(ctx, []string{"migrate", other, "--check", "--postgres-url", url}, &out)
				require.ErrorIs(t, err, migrate.ErrForeignSchema, "--check: %s", out.String())
				err = run(ctx, []string{"migrate", other, "--postgres-url", url}, &out)
				require.ErrorIs(t, err, migrate.ErrForeignSchema, "migrate: %s", out.String())
				assert.ErrorContains(t, err, "0001_")
				for _, m := range []migrate.Mode{migrate.Off, migrate.Auto} {
					assert.ErrorIs(t, open[other](url, m), migrate.ErrForeignSchema, "open with migrate %s", m)
				}
			})
		}
		require.NoError(t, run(ctx, []string{"migrate", owner, "--check", "--postgres-url", url}, &bytes.Buffer{}), "the owner's schema is intact")
	}
}
