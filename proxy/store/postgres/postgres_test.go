package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/service"
	"github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/proxy/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// database is a fresh, migrated gateway database.
func database(t *testing.T) string {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	return testenv.SharedPostgres(t).NewDatabase(t, "gateway", postgres.MigrateURL)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := postgres.Open(context.Background(), database(t))
		require.NoError(t, err)
		return s
	})
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	url := database(t)
	for i := range 2 {
		require.NoError(t, postgres.MigrateURL(context.Background(), url), "migrate run %d", i+1)
	}
}

// TestReadOnly: the reconciliation's connection reads and cannot write,
// also through the multi-host URL form of a primary with a standby
// (target_session_attrs=read-write; the read-only session used to look
// like a standby on every host: "read only connection").
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	url := database(t)
	rw, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer rw.Close()
	p := &service.Payment{ID: "pay_1", MerchantID: "mer_1", Status: service.StatusAuthorized, Amount: 100, Currency: "USD", Token: "tok_1", Acquirer: "simulator", Version: 1}
	require.NoError(t, rw.Insert(ctx, p))

	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	cases := []struct{ name, url string }{
		{"plain URL", url},
		{"target_session_attrs=read-write", url + sep + "target_session_attrs=read-write"},
	}
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ro, err := postgres.OpenReadOnly(ctx, tt.url)
			require.NoError(t, err)
			defer ro.Close()
			got, err := ro.PaymentsAfter(ctx, "", 10)
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, "pay_1", got[0].ID)
			q := *p
			q.ID = fmt.Sprintf("pay_ro_%d", i)
			assert.ErrorContains(t, ro.Insert(ctx, &q), "read-only", "a write on the read-only connection")
		})
	}
}

func TestOpenReadOnlyUnreachable(t *testing.T) {
	_, err := postgres.OpenReadOnly(context.Background(), "postgres://127.0.0.1:1/gateway?connect_timeout=2")
	assert.ErrorContains(t, err, "gateway postgres")
}
