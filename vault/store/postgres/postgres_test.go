package postgres_test

import (
	"context"
	"testing"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/store/storetest"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	pg := testenv.SharedPostgres(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), pg.NewDatabase(t, "vault", postgres.MigrateURL), postgres.Options{})
		require.NoError(t, err)
		return s
	})
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	pg := testenv.SharedPostgres(t)
	url := pg.NewDatabase(t, "vault", postgres.MigrateURL)
	for i := 0; i < 2; i++ {
		require.NoError(t, postgres.MigrateURL(context.Background(), url), "migrate run %d", i+1)
	}
}
