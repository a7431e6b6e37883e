package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestVerifyFailsOnReadFault: a read that fails in the middle of a result
// set (here the database raises an error on one row, as a terminated
// backend or a statement timeout would) makes Verify fail, instead of
// passing on the rows it read before the failure. Each case puts a view in
// front of one table whose column raises on one row.
func TestVerifyFailsOnReadFault(t *testing.T) {
	cases := []struct {
		name, table, view string
	}{
		{"transactions mid-scan", "transactions",
			`SELECT seq, id, kind, pending_id, expires_at, request_hash, description, metadata, prev_hash, obol_fault(hash, seq = 2) AS hash, created_at, chain FROM transactions_stored`},
		{"holds", "accounts",
			`SELECT id, currency, flags, name, posted, obol_fault(pending_debits, id = 'b') AS pending_debits, pending_credits, created_at FROM accounts_stored`},
		{"balances", "accounts",
			`SELECT id, currency, flags, name, obol_fault(posted, id = 'b') AS posted, pending_debits, pending_credits, created_at FROM accounts_stored`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, url := open(t)
			ctx := context.Background()
			mustAccount(t, s, "a", "USD", 0)
			mustAccount(t, s, "b", "USD", 0)
			for i := 0; i < 3; i++ {
				_, err := s.Post(ctx, transfer(fmt.Sprintf("t%d", i), "a", "b", 100))
				require.NoError(t, err)
			}
			rep, err := s.Verify(ctx)
			require.NoError(t, err)
			require.Empty(t, rep.Problems)
			require.EqualValues(t, 3, rep.Transactions)

			db, err := pgx.Connect(ctx, url)
			require.NoError(t, err)
			defer db.Close(ctx)
			for _, q := range []string{
				`CREATE FUNCTION obol_fault(v anyelement, hit boolean) RETURNS anyelement LANGUAGE plpgsql IMMUTABLE AS $$
				BEGIN IF hit THEN RAISE EXCEPTION 'injected read fault'; END IF; RETURN v; END $$`,
				`ALTER TABLE ` + c.table + ` RENAME TO ` + c.table + `_stored`,
				`CREATE VIEW ` + c.table + ` AS ` + c.view,
			} {
				_, err := db.Exec(ctx, q)
				require.NoError(t, err, q)
			}
			rep, err = s.Verify(ctx)
			require.Error(t, err, "verify passed on a partial read: %+v", rep)
			require.ErrorContains(t, err, "injected read fault")
		})
	}
}
