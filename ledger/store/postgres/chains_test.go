package postgres_test

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
)

// TestSplit: a batch splits into groups with no account, id or hold in
// common, balanced, each in the batch's order; a hot account, a small
// batch or one component stays one group.
func TestSplit(t *testing.T) {
	spread := func(n int) []journal.Transaction {
		var txs []journal.Transaction
		for i := range n {
			txs = append(txs, transfer(fmt.Sprintf("s%d", i), fmt.Sprintf("a%d", 2*i), fmt.Sprintf("a%d", 2*i+1), 1))
		}
		return txs
	}
	hot := func(n int) []journal.Transaction {
		var txs []journal.Transaction
		for i := range n {
			txs = append(txs, transfer(fmt.Sprintf("h%d", i), "hot", fmt.Sprintf("a%d", i), 1))
		}
		return txs
	}
	var evens, odds []int
	for i := range 32 {
		if i%2 == 0 {
			evens = append(evens, i)
		} else {
			odds = append(odds, i)
		}
	}
	tests := []struct {
		name string
		txs  []journal.Transaction
		n    int
		want [][]int
	}{
		{"spread, two groups", spread(32), 2, nil}, // checked below: 16 + 16, disjoint
		{"one hot account", hot(32), 2, [][]int{nil}},
		{"too small to split", spread(15), 2, [][]int{nil}},
		{"one writer", spread(32), 1, [][]int{nil}},
		{"a hold and its post stay together", func() []journal.Transaction {
			txs := spread(32)
			for i := 1; i < 32; i += 2 { // the odd ones post the hold of the even one before
				txs[i-1].Kind = journal.KindPending
				txs[i] = journal.Transaction{ID: fmt.Sprintf("cap%d", i), Kind: journal.KindPostPending, PendingID: txs[i-1].ID, Postings: []journal.Posting{{Amount: 1}}}
			}
			return txs
		}(), 2, nil},
		{"closing an older hold: not split", func() []journal.Transaction {
			txs := spread(32)
			txs[5] = journal.Transaction{ID: "cap", Kind: journal.KindPostPending, PendingID: "older", Postings: []journal.Posting{{Amount: 1}}}
			return txs
		}(), 2, [][]int{nil}},
		{"the same id twice stays together", func() []journal.Transaction {
			txs := spread(32)
			txs[31] = txs[0]
			return txs
		}(), 2, nil},
		{"two hot accounts: one group each", func() []journal.Transaction {
			var txs []journal.Transaction
			for i := range 32 {
				txs = append(txs, transfer(fmt.Sprintf("h%d", i), fmt.Sprintf("hot%d", i%2), fmt.Sprintf("a%d", i), 1))
			}
			return txs
		}(), 2, [][]int{evens, odds}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := postgres.Split(tt.txs, tt.n)
			if tt.want != nil {
				require.ElementsMatch(t, tt.want, got)
				return
			}
			require.Len(t, got, 2, "groups")
			assert.InDelta(t, len(got[0]), len(got[1]), 2, "balanced")
			keys := func(g []int) map[string]bool {
				k := map[string]bool{}
				for _, i := range g {
					tx := tt.txs[i]
					k["t:"+tx.ID] = true
					if tx.PendingID != "" {
						k["t:"+tx.PendingID] = true
					}
					for _, p := range tx.Postings {
						if p.AccountID != "" {
							k["a:"+p.AccountID] = true
						}
					}
				}
				return k
			}
			k0 := keys(got[0])
			for k := range keys(got[1]) {
				assert.False(t, k0[k], "%s in both groups", k)
			}
			for _, g := range got {
				assert.IsIncreasing(t, g, "the batch's order")
			}
			assert.Len(t, append(append([]int{}, got[0]...), got[1]...), len(tt.txs), "every transaction once")
		})
	}
}

// populateChains posts rounds of disjoint transfers concurrently until the
// writer has split a batch (two groups on two chains), and returns the
// chains that hold transactions.
func populateChains(t *testing.T, s *postgres.Store, db *pgx.Conn) []int {
	t.Helper()
	ctx := context.Background()
	for i := range 64 {
		mustAccount(t, s, fmt.Sprintf("p%02d", i), "USD", 0)
	}
	for round := 0; round < 50 && s.Stats().Batches == s.Stats().Flushes; round++ {
		var txs []journal.Transaction
		for i := range 32 {
			txs = append(txs, transfer(fmt.Sprintf("r%d-%d", round, i), fmt.Sprintf("p%02d", 2*i), fmt.Sprintf("p%02d", 2*i+1), 1))
		}
		for i, err := range postAll(t, s, txs) {
			require.NoError(t, err, "round %d, transfer %d", round, i)
		}
	}
	st := s.Stats()
	require.Greater(t, st.Batches, st.Flushes, "no batch was split into groups")
	rows, err := db.Query(ctx, `SELECT DISTINCT chain FROM transactions ORDER BY chain`)
	require.NoError(t, err)
	used, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(used), 2, "chains used")
	return used
}

// TestBatchesCommitOnSeveralChains: the groups of a batch commit on
// different chains, each chain unbroken, and every transfer once.
func TestBatchesCommitOnSeveralChains(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	populateChains(t, s, db)
	var n int64
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM transactions`).Scan(&n))
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
	require.Equal(t, n, rep.Transactions)
	// Each chain's head is its last transaction.
	var bad int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM journal_chains c WHERE c.seq <> COALESCE((SELECT max(seq) FROM transactions t WHERE t.chain = c.chain), 0)`).Scan(&bad))
	require.Zero(t, bad, "heads")
}

// TestVerifyDetectsTamperingInAnyChain: in every chain that holds
// transactions, a modified, deleted (in the middle or the last) or
// reordered transaction is found by Verify.
func TestVerifyDetectsTamperingInAnyChain(t *testing.T) {
	cases := []struct {
		name string
		// sql tampers with chain $1 (first, second, last: its seqs in order)
		sql func(first, second, last int64) []string
	}{
		{"modified", func(first, _, _ int64) []string {
			return []string{fmt.Sprintf(`UPDATE transactions SET description = 'edited' WHERE seq = %d`, first)}
		}},
		{"deleted in the middle", func(first, _, _ int64) []string {
			return []string{fmt.Sprintf(`DELETE FROM postings WHERE seq = %d`, first), fmt.Sprintf(`DELETE FROM transactions WHERE seq = %d`, first)}
		}},
		{"deleted, the last", func(_, _, last int64) []string {
			return []string{fmt.Sprintf(`DELETE FROM postings WHERE seq = %d`, last), fmt.Sprintf(`DELETE FROM transactions WHERE seq = %d`, last)}
		}},
		{"reordered", func(first, second, _ int64) []string {
			var q []string
			for _, tbl := range []string{"postings", "transactions"} {
				q = append(q, fmt.Sprintf(`UPDATE %s SET seq = -1 WHERE seq = %d`, tbl, first),
					fmt.Sprintf(`UPDATE %s SET seq = %d WHERE seq = %d`, tbl, first, second),
					fmt.Sprintf(`UPDATE %s SET seq = %d WHERE seq = -1`, tbl, second))
			}
			return q
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, url := open(t)
			ctx := context.Background()
			db, err := pgx.Connect(ctx, url)
			require.NoError(t, err)
			defer db.Close(ctx)
			used := populateChains(t, s, db)
			for _, q := range []string{
				`ALTER TABLE postings DISABLE TRIGGER postings_immutable`,
				`ALTER TABLE transactions DISABLE TRIGGER transactions_immutable`,
			} {
				_, err := db.Exec(ctx, q)
				require.NoError(t, err)
			}
			tx, err := db.Begin(ctx)
			require.NoError(t, err)
			for _, chain := range used { // every chain, in one change
				var first, second, last int64
				require.NoError(t, tx.QueryRow(ctx, `SELECT min(seq), (SELECT seq FROM transactions WHERE chain = $1 ORDER BY seq OFFSET 1 LIMIT 1), max(seq) FROM transactions WHERE chain = $1`, chain).
					Scan(&first, &second, &last))
				require.Less(t, second, last, "chain %d: at least three transactions", chain)
				for _, q := range c.sql(first, second, last) {
					_, err := tx.Exec(ctx, q)
					require.NoError(t, err, q)
				}
			}
			rep, err := s.Verify(ctx)
			require.NoError(t, err)
			require.Empty(t, rep.Problems, "before the change commits (Verify reads a snapshot)")
			require.NoError(t, tx.Commit(ctx))
			rep, err = s.Verify(ctx)
			require.NoError(t, err)
			for _, chain := range used {
				found := slices.ContainsFunc(rep.Problems, func(p string) bool {
					return strings.Contains(p, fmt.Sprintf("in chain %d:", chain)) || strings.HasPrefix(p, fmt.Sprintf("chain %d: head", chain))
				})
				assert.True(t, found, "chain %d: tampering (%s) not found: %q", chain, c.name, rep.Problems)
			}
		})
	}
}

// TestMigrateSingleChain: a journal written with one chain (schema version
// 5) becomes chain 0 of the partitioned journal: it verifies, new
// transactions continue its seqs on every chain, and the whole verifies.
func TestMigrateSingleChain(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	v5 := fstest.MapFS{}
	for i := 1; i <= 5; i++ {
		names, err := fs.Glob(postgres.Migrations, fmt.Sprintf("migrations/%04d_*.sql", i))
		require.NoError(t, err)
		require.Len(t, names, 1)
		b, err := fs.ReadFile(postgres.Migrations, names[0])
		require.NoError(t, err)
		v5[names[0]] = &fstest.MapFile{Data: b}
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "ledger_v5", func(ctx context.Context, url string) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return migrate.Postgres(ctx, conn, v5, "migrations", 727275001)
	})
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	// The version 5 writer's work: one chain under journal_head.
	_, err = db.Exec(ctx, `INSERT INTO accounts (id, currency, created_at) SELECT 'p' || lpad(i::text, 2, '0'), 'USD', now() FROM generate_series(0, 63) AS i`)
	require.NoError(t, err)
	prev := journal.Genesis
	at := time.Now().UTC().Truncate(time.Microsecond)
	const old = 5
	for seq := int64(1); seq <= old; seq++ {
		tx := transfer(fmt.Sprintf("old%d", seq), "p00", "p01", seq)
		rh := journal.RequestHash(&tx)
		hash := journal.ChainHash(prev, seq, rh, at)
		dbtx, err := db.Begin(ctx)
		require.NoError(t, err)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO transactions (seq, id, request_hash, prev_hash, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`, []any{seq, tx.ID, rh, prev, hash, at}},
			{`INSERT INTO postings VALUES ($1, 0, 'p00', $2, 'USD'), ($1, 1, 'p01', $3, 'USD')`, []any{seq, -seq, seq}},
			{`UPDATE accounts SET posted = posted + CASE id WHEN 'p00' THEN -$1::bigint ELSE $1::bigint END WHERE id IN ('p00', 'p01')`, []any{seq}},
			{`UPDATE journal_head SET seq = $1, hash = $2`, []any{seq, hash}},
		} {
			_, err := dbtx.Exec(ctx, q.sql, q.args...)
			require.NoError(t, err, q.sql)
		}
		require.NoError(t, dbtx.Commit(ctx))
		prev = hash
	}

	s, err := postgres.Open(ctx, url) // migrates to the latest version
	require.NoError(t, err)
	defer s.Close()
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Problems, "the old chain, as chain 0")
	require.EqualValues(t, old, rep.Transactions)

	r, err := s.Post(ctx, transfer("old3", "p00", "p01", 3))
	require.NoError(t, err)
	require.True(t, r.Replayed, "an old id replays")
	require.EqualValues(t, 3, r.Transaction.Seq)
	r, err = s.Post(ctx, transfer("new", "p02", "p03", 1))
	require.NoError(t, err)
	require.Greater(t, r.Transaction.Seq, int64(old), "seqs continue after the old chain")
	for round := 0; round < 50 && s.Stats().Batches == s.Stats().Flushes; round++ {
		var txs []journal.Transaction
		for i := range 32 {
			txs = append(txs, transfer(fmt.Sprintf("r%d-%d", round, i), fmt.Sprintf("p%02d", 2*i), fmt.Sprintf("p%02d", 2*i+1), 1))
		}
		for i, err := range postAll(t, s, txs) {
			require.NoError(t, err, "round %d, transfer %d", round, i)
		}
	}
	var chains int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(DISTINCT chain) FROM transactions`).Scan(&chains))
	require.GreaterOrEqual(t, chains, 2, "chains in use")
	var n int64
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM transactions`).Scan(&n))
	rep, err = s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Problems, "old and new chains")
	require.Equal(t, n, rep.Transactions)
}

// fundX creates world, x (no negative available balance) and y, and moves
// 100 from world to x.
func fundX(t *testing.T, s *postgres.Store) {
	t.Helper()
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "x", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "y", "USD", 0)
	_, err := s.Post(context.Background(), transfer("fund", "world", "x", 100))
	require.NoError(t, err)
}

// TestConcurrentWriterBetweenReadAndWrite: another writer (a replica, or a
// batch on another chain) commits to a row a batch has read before the
// batch writes: the batch's compare-and-set fails, and it runs again with
// its rows locked, on what the other committed. Balances stay exact, a
// hold closes once, and the chains verify.
func TestConcurrentWriterBetweenReadAndWrite(t *testing.T) {
	cases := []struct {
		name  string
		first journal.Transaction // posted by a, whose read the other writer follows
		other journal.Transaction // posted by b, between a's read and a's write
		// the outcome of a's transaction, and the balances of x, y
		wantErr error
		x, y    journal.Balance
	}{
		{"both transfers to one account", transfer("a1", "x", "y", 10), transfer("b1", "x", "y", 5), nil,
			journal.Balance{Posted: 85}, journal.Balance{Posted: 15}},
		{"the other transfer drains the account", transfer("a1", "x", "y", 60), transfer("b1", "x", "y", 50), journal.ErrInsufficientFunds,
			journal.Balance{Posted: 50}, journal.Balance{Posted: 50}},
		{"the hold is voided first", journal.Transaction{ID: "cap", Kind: journal.KindPostPending, PendingID: "hold", Postings: []journal.Posting{{Amount: 30}}},
			journal.Transaction{ID: "void", Kind: journal.KindVoidPending, PendingID: "hold"}, journal.ErrPendingClosed,
			journal.Balance{Posted: 100}, journal.Balance{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, url := open(t)
			b, err := postgres.Open(context.Background(), url)
			require.NoError(t, err)
			defer b.Close()
			ctx := context.Background()
			fundX(t, a)
			hold := journal.Transaction{ID: "hold", Kind: journal.KindPending, Postings: []journal.Posting{{AccountID: "x", Amount: -40, Currency: "USD"}, {AccountID: "y", Amount: 40, Currency: "USD"}}}
			if c.first.PendingID != "" {
				_, err = a.Post(ctx, hold)
				require.NoError(t, err)
			}
			var runs []bool
			var otherErr error
			a.AfterRead(func(lock bool) { // on a's writer goroutine
				runs = append(runs, lock)
				if len(runs) == 1 {
					_, otherErr = b.Post(ctx, c.other) // commits while a has read but not written
				}
			})
			before := a.Stats()
			_, err = a.Post(ctx, c.first)
			if c.wantErr != nil {
				require.ErrorIs(t, err, c.wantErr)
			} else {
				require.NoError(t, err)
			}
			a.AfterRead(nil)
			require.NoError(t, otherErr, "the other writer")
			assert.Equal(t, []bool{false, true}, runs, "read without locks, then again with them")
			assert.EqualValues(t, 1, a.Stats().Conflicts-before.Conflicts, "conflicts")
			x, err := a.Account(ctx, "x")
			require.NoError(t, err)
			y, err := a.Account(ctx, "y")
			require.NoError(t, err)
			assert.Equal(t, c.x, x.Balance, "x")
			assert.Equal(t, c.y, y.Balance, "y")
			rep, err := a.Verify(ctx)
			require.NoError(t, err)
			assert.Empty(t, rep.Problems)
		})
	}
}

// TestChangedAndChangedBack: between a batch's read and its write, other
// writers move an account and move it back (+5, then −5): its balances
// are what the batch read, but not its postings. The batch's
// compare-and-set (on the account's version) still fails, and it runs
// again locked, so its posting takes a seq above theirs: a History cursor
// taken after theirs still finds it.
func TestChangedAndChangedBack(t *testing.T) {
	a, url := open(t)
	b, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	fundX(t, a)
	mustAccount(t, a, "z", "USD", 0)

	var runs []bool
	var otherErr error
	var cursor int64 // x's last seq a reader saw before a's write
	a.AfterRead(func(lock bool) {
		runs = append(runs, lock)
		if len(runs) > 1 {
			return
		}
		for _, tx := range []journal.Transaction{transfer("out", "x", "z", 5), transfer("back", "z", "x", 5)} {
			if _, otherErr = b.Post(ctx, tx); otherErr != nil {
				return
			}
		}
		var h []store.Entry
		h, otherErr = b.History(ctx, "x", 0, 100)
		if len(h) > 0 {
			cursor = h[len(h)-1].Seq
		}
	})
	res, err := a.Post(ctx, transfer("a1", "x", "y", 10))
	a.AfterRead(nil)
	require.NoError(t, err)
	require.NoError(t, otherErr, "the other writer")
	assert.Equal(t, []bool{false, true}, runs, "the changed-back account fails the compare-and-set")
	assert.Greater(t, res.Transaction.Seq, cursor, "a1 comes after what a reader has already seen")

	after, err := a.History(ctx, "x", cursor, 100)
	require.NoError(t, err)
	require.Len(t, after, 1, "the cursor's next page")
	assert.Equal(t, "a1", after[0].TransactionID)
	x, err := a.Account(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, journal.Balance{Posted: 90}, x.Balance)
	rep, err := a.Verify(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

// TestOlderBinaryWrite: during a rolling upgrade a ledgerd from before
// migration 7 writes balances by comparing them and does not set the
// account's version. A batch that read the account before that write
// still fails its compare-and-set (the version moves on every write) and
// runs again locked: nothing is lost.
func TestOlderBinaryWrite(t *testing.T) {
	a, url := open(t)
	ctx := context.Background()
	fundX(t, a)
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)

	var runs []bool
	var oldErr error
	a.AfterRead(func(lock bool) {
		runs = append(runs, lock)
		if len(runs) == 1 {
			// The schema-6 writer's statement, as it ran: balances
			// compared, version not named.
			_, oldErr = db.Exec(ctx, `UPDATE accounts SET posted = posted - 5 WHERE id = 'x' AND posted = 100 AND pending_debits = 0 AND pending_credits = 0`)
		}
	})
	_, err = a.Post(ctx, transfer("a1", "x", "y", 10))
	a.AfterRead(nil)
	require.NoError(t, err)
	require.NoError(t, oldErr, "the older binary's write")
	assert.Equal(t, []bool{false, true}, runs, "the older binary's write fails the compare-and-set")
	x, err := a.Account(ctx, "x")
	require.NoError(t, err)
	assert.Equal(t, journal.Balance{Posted: 85}, x.Balance, "both writes kept")
}

// TestEveryChainTaken: when every chain head is held (more concurrent
// batches than chains), a batch waits for its preferred head, taken before
// any other lock, and goes through once it is free (a round trip that
// finds no free head, then three); the journal verifies.
func TestEveryChainTaken(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	mustAccount(t, s, "a", "USD", 0)
	mustAccount(t, s, "b", "USD", 0)
	holder, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT chain FROM journal_chains FOR UPDATE`)
	require.NoError(t, err)

	before := s.Stats()
	done := make(chan error, 1)
	go func() {
		_, err := s.Post(ctx, transfer("t1", "a", "b", 1))
		done <- err
	}()
	// The batch waits on a head: PostgreSQL shows its backend waiting for
	// a lock (the holder's).
	require.Eventually(t, func() bool {
		var n int
		err := holder.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	}, 20*time.Second, 20*time.Millisecond, "the batch never waited for a head")
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-done)
	st := s.Stats()
	assert.EqualValues(t, 2, st.Batches-before.Batches, "the batch, then again waiting for its head")
	assert.EqualValues(t, 1+3, st.RoundTrips-before.RoundTrips, "one round trip (no head free), then three")
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.EqualValues(t, 1, rep.Transactions)
}
