package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/sqlite"
	"github.com/obolpay/obol/ledger/store/storetest"
	"github.com/stretchr/testify/require"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
		require.NoError(t, err)
		return s
	})
}
