package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store/sqlite"
)

// TestVerifyFailsOnReadFault: a read that fails in the middle of a result
// set makes Verify fail instead of passing on the rows read before the
// failure. Each case puts a view in front of one table whose column raises
// a real SQLite error (malformed JSON) on one row.
func TestVerifyFailsOnReadFault(t *testing.T) {
	cases := []struct {
		name, table, view string
	}{
		{"transactions mid-scan", "transactions",
			`SELECT seq, id, kind, pending_id, expires_at, request_hash, description, metadata, prev_hash, CASE WHEN seq = 2 THEN json('injected read fault') ELSE hash END AS hash, created_at FROM transactions_stored`},
		{"postings", "postings",
			`SELECT seq, idx, account_id, amount, CASE WHEN seq = 2 AND idx = 1 THEN json('injected read fault') ELSE currency END AS currency FROM postings_stored`},
		{"balances and holds", "accounts",
			`SELECT id, currency, flags, name, CASE WHEN id = 'b' THEN json('injected read fault') ELSE posted END AS posted, pending_debits, pending_credits, created_at FROM accounts_stored`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.db")
			s, err := sqlite.Open(context.Background(), path)
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			ctx := context.Background()
			for _, id := range []string{"a", "b"} {
				_, err := s.CreateAccount(ctx, journal.Account{ID: id, Currency: "USD"})
				require.NoError(t, err)
			}
			for i := 0; i < 3; i++ {
				_, err := s.Post(ctx, journal.Transaction{ID: fmt.Sprintf("t%d", i), Postings: []journal.Posting{
					{AccountID: "a", Amount: -100, Currency: "USD"}, {AccountID: "b", Amount: 100, Currency: "USD"}}})
				require.NoError(t, err)
			}
			rep, err := s.Verify(ctx)
			require.NoError(t, err)
			require.Empty(t, rep.Problems)
			require.EqualValues(t, 3, rep.Transactions)

			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
			require.NoError(t, err)
			defer db.Close()
			for _, q := range []string{
				`ALTER TABLE ` + c.table + ` RENAME TO ` + c.table + `_stored`,
				`CREATE VIEW ` + c.table + ` AS ` + c.view,
			} {
				_, err := db.ExecContext(ctx, q)
				require.NoError(t, err, q)
			}
			rep, err = s.Verify(ctx)
			require.Error(t, err, "verify passed on a partial read: %+v", rep)
			require.ErrorContains(t, err, "malformed JSON")
		})
	}
}
