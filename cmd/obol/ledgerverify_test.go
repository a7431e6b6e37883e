package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store/sqlite"
)

// TestLedgerVerifyDefaultDataDir: `obol ledger verify` without flags uses
// the documented default data dir (./.obol); where there is no ledger it
// says so instead of "--data-dir is required" (and creates nothing: an
// empty ledger would verify); a read failure fails the verification.
func TestLedgerVerifyDefaultDataDir(t *testing.T) {
	t.Setenv("OBOL_LEDGER_POSTGRES_URL", "")
	t.Run("no ledger", func(t *testing.T) {
		t.Chdir(t.TempDir())
		var out bytes.Buffer
		err := run(context.Background(), []string{"ledger", "verify"}, &out)
		require.EqualError(t, err, "no obol dev ledger at .obol/ledger.db (pass the --data-dir of obol dev, or --postgres-url / OBOL_LEDGER_POSTGRES_URL for ledgerd's database)")
		require.NoFileExists(t, filepath.Join(".obol", "ledger.db"))
	})
	t.Run("default data dir", func(t *testing.T) {
		t.Chdir(t.TempDir())
		path := filepath.Join(".obol", "ledger.db")
		require.NoError(t, os.Mkdir(".obol", 0o700))
		st, err := sqlite.Open(context.Background(), path)
		require.NoError(t, err)
		for _, id := range []string{"a", "b"} {
			_, err := st.CreateAccount(context.Background(), journal.Account{ID: id, Currency: "EUR"})
			require.NoError(t, err)
		}
		for _, id := range []string{"t1", "t2"} {
			_, err = st.Post(context.Background(), journal.Transaction{ID: id, Postings: []journal.Posting{{AccountID: "a", Amount: -5, Currency: "EUR"}, {AccountID: "b", Amount: 5, Currency: "EUR"}}})
			require.NoError(t, err)
		}
		require.NoError(t, st.Close())
		var out bytes.Buffer
		require.NoError(t, run(context.Background(), []string{"ledger", "verify"}, &out))
		require.Contains(t, out.String(), "ledger verified: 2 transactions, 2 accounts")

		// A read that fails after the first transaction (a real SQLite
		// error raised on the second row) fails the verification.
		db, err := sql.Open("sqlite", "file:"+path)
		require.NoError(t, err)
		defer db.Close()
		for _, q := range []string{`ALTER TABLE transactions RENAME TO transactions_stored`,
			`CREATE VIEW transactions AS SELECT seq, id, kind, pending_id, expires_at, request_hash, description, metadata, prev_hash,
				CASE WHEN seq = 2 THEN json('read fault') ELSE hash END AS hash, created_at FROM transactions_stored`} {
			_, err := db.Exec(q)
			require.NoError(t, err)
		}
		out.Reset()
		err = run(context.Background(), []string{"ledger", "verify"}, &out)
		require.ErrorContains(t, err, "verify: read transactions: ")
		require.NotContains(t, out.String(), "ledger verified")
	})
}
