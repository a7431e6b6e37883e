package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/sqlite"
	"github.com/obolpay/obol/vault/store/storetest"
	"github.com/stretchr/testify/require"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
		require.NoError(t, err)
		return s
	})
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, s.CreateMerchant(ctx, store.Merchant{ID: "mer_1", Name: "x"}, nil))
	s.Close()
	s, err = sqlite.Open(ctx, path) // migrations are idempotent
	require.NoError(t, err)
	defer s.Close()
	_, err = s.GetMerchant(ctx, "mer_1")
	require.NoError(t, err, "merchant lost on reopen")
}
