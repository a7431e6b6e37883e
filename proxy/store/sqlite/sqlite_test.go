package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/proxy/service"
	"github.com/obolpay/obol/proxy/store"
	"github.com/obolpay/obol/proxy/store/sqlite"
	"github.com/obolpay/obol/proxy/store/storetest"
)

// open opens (creating) the database at path.
func open(t *testing.T, path string) *store.Store {
	s, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t, filepath.Join(t.TempDir(), "gateway.db")) })
}

// TestReadOnly: a reopened database keeps its data; the read-only
// connection reads it and cannot write; a missing file is an error, never
// a fresh database.
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gateway.db")
	rw := open(t, path)
	p := &service.Payment{ID: "pay_1", MerchantID: "mer_1", Status: service.StatusAuthorized, Amount: 100, Currency: "USD", Token: "tok_1", Acquirer: "simulator", Version: 1}
	require.NoError(t, rw.Insert(ctx, p))
	require.NoError(t, rw.Close())
	rw = open(t, path) // migrations are idempotent
	defer rw.Close()

	ro, err := sqlite.OpenReadOnly(ctx, path)
	require.NoError(t, err)
	defer ro.Close()
	got, err := ro.Get(ctx, "mer_1", "pay_1")
	require.NoError(t, err)
	assert.Equal(t, service.StatusAuthorized, got.Status)
	p.ID = "pay_2"
	assert.Error(t, ro.Insert(ctx, p), "a write on the read-only connection")

	_, err = sqlite.OpenReadOnly(ctx, filepath.Join(t.TempDir(), "none.db"))
	assert.ErrorContains(t, err, "gateway database")
}
