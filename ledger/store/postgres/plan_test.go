package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/ledger/journal"
)

// TestBatchesReadByKey: a batch reads and writes the rows it names through
// their indexes, also on a database the planner has no statistics for (just
// loaded, not analyzed): no batch scans a whole table. Counted by
// PostgreSQL itself (pg_stat_user_tables), once the writer's backends have
// exited and reported.
func TestBatchesReadByKey(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	const accounts = 2000
	_, err = db.Exec(ctx, `INSERT INTO accounts (id, currency, created_at) SELECT 'a' || lpad(i::text, 5, '0'), 'USD', now() FROM generate_series(0, $1 - 1) AS i`, accounts)
	require.NoError(t, err)
	var txs []journal.Transaction
	for round := 0; round < 3; round++ {
		txs = txs[:0]
		for i := 0; i < 100; i++ {
			n := round*100 + i
			from, to := fmt.Sprintf("a%05d", n%accounts), fmt.Sprintf("a%05d", (n*7+1)%accounts)
			if i%4 == 0 {
				from = "a00000" // a hot account as well
			}
			if from == to {
				to = "a01999"
			}
			txs = append(txs, transfer(fmt.Sprintf("k%d", n), from, to, 1))
		}
		for i, err := range postAll(t, s, txs) {
			require.NoError(t, err, "round %d, transfer %d", round, i)
		}
	}
	require.NoError(t, s.Close()) // the backends exit and report their counts

	type scans struct{ seq, idx int64 }
	read := func() map[string]scans {
		rows, err := db.Query(ctx, `SELECT relname, COALESCE(seq_scan, 0), COALESCE(idx_scan, 0) FROM pg_stat_user_tables WHERE relname IN ('accounts', 'transactions', 'postings')`)
		require.NoError(t, err)
		defer rows.Close()
		got := map[string]scans{}
		for rows.Next() {
			var name string
			var sc scans
			require.NoError(t, rows.Scan(&name, &sc.seq, &sc.idx))
			got[name] = sc
		}
		require.NoError(t, rows.Err())
		return got
	}
	var got map[string]scans
	// 300 transfers read 600 accounts by key, at least; wait for the report.
	require.Eventually(t, func() bool {
		_, _ = db.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		got = read()
		return got["accounts"].idx >= 300 && got["transactions"].idx > 0
	}, 20*time.Second, 50*time.Millisecond, "the writer's backends did not report their index scans")
	for _, table := range []string{"accounts", "transactions", "postings"} {
		require.Zero(t, got[table].seq, "%s: whole-table scans by the batches (%d index scans)", table, got[table].idx)
	}
}
