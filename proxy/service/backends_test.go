package service_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/service"
	"github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/proxy/store/sqlite"
)

func init() {
	service.Backends = map[string]func(t *testing.T) service.TestStore{
		"postgres": func(t *testing.T) service.TestStore {
			if testing.Short() {
				t.Skip("needs PostgreSQL")
			}
			st, err := postgres.Open(context.Background(), testenv.SharedPostgres(t).NewDatabase(t, "gateway", postgres.MigrateURL))
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			return st
		},
		"sqlite": func(t *testing.T) service.TestStore {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gateway.db"))
			require.NoError(t, err)
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
}
