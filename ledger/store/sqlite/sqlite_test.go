package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/sqlite"
	"github.com/obolpay/obol/ledger/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
