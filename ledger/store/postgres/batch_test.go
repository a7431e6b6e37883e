package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store/postgres"
)

// postAll posts txs concurrently (so that the writer batches them) and
// returns each one's error.
func postAll(t *testing.T, s *postgres.Store, txs []journal.Transaction) []error {
	t.Helper()
	errs := make([]error, len(txs))
	var wg sync.WaitGroup
	for i, tx := range txs {
		wg.Go(func() { _, errs[i] = s.Post(context.Background(), tx) })
	}
	wg.Wait()
	return errs
}

// TestBatchedHolds: holds (with and without expiry) opened, posted and
// voided by concurrent callers, many per batch, are written set-based and
// leave exactly the balances and hold states the operations imply; the
// journal verifies.
func TestBatchedHolds(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "customer", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "merchant", "USD", 0)
	_, err := s.Post(ctx, transfer("fund", "world", "customer", 100000))
	require.NoError(t, err)
	const n = 40
	expiry := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	var holds []journal.Transaction
	for i := range n {
		h := journal.Transaction{ID: fmt.Sprintf("auth%d", i), Kind: journal.KindPending, Postings: []journal.Posting{
			{AccountID: "customer", Amount: -100, Currency: "USD"}, {AccountID: "merchant", Amount: 100, Currency: "USD"}}}
		if i%2 == 0 {
			h.ExpiresAt = expiry
		}
		holds = append(holds, h)
	}
	for i, err := range postAll(t, s, holds) {
		require.NoError(t, err, "hold %d", i)
	}
	c, err := s.Account(ctx, "customer")
	require.NoError(t, err)
	require.Equal(t, journal.Balance{Posted: 100000, PendingDebits: n * 100}, c.Balance)

	// Close them concurrently: even ones post 60, odd ones are voided.
	var closes []journal.Transaction
	for i := range n {
		if i%2 == 0 {
			closes = append(closes, journal.Transaction{ID: fmt.Sprintf("cap%d", i), Kind: journal.KindPostPending, PendingID: fmt.Sprintf("auth%d", i),
				Postings: []journal.Posting{{Amount: 60}}})
		} else {
			closes = append(closes, journal.Transaction{ID: fmt.Sprintf("void%d", i), Kind: journal.KindVoidPending, PendingID: fmt.Sprintf("auth%d", i)})
		}
	}
	for i, err := range postAll(t, s, closes) {
		require.NoError(t, err, "close %d", i)
	}
	c, err = s.Account(ctx, "customer")
	require.NoError(t, err)
	m, err := s.Account(ctx, "merchant")
	require.NoError(t, err)
	require.Equal(t, journal.Balance{Posted: 100000 - n/2*60}, c.Balance)
	require.Equal(t, journal.Balance{Posted: n / 2 * 60}, m.Balance)
	for i := range n {
		h, err := s.Pending(ctx, fmt.Sprintf("auth%d", i))
		require.NoError(t, err)
		if i%2 == 0 {
			require.Equal(t, "posted", h.Status, "hold %d", i)
			require.True(t, h.ExpiresAt.Equal(expiry), "hold %d expiry %v", i, h.ExpiresAt)
		} else {
			require.Equal(t, "voided", h.Status, "hold %d", i)
			require.True(t, h.ExpiresAt.IsZero(), "hold %d expiry %v", i, h.ExpiresAt)
		}
	}
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
	require.EqualValues(t, 1+2*n, rep.Transactions)
	st := s.Stats()
	require.EqualValues(t, 1+2*n, st.Items, "every post went through the batch writer")
	require.Equal(t, 2*st.Batches, st.RoundTrips, "a batch is two round trips")
}

// TestBatchRefusedByDatabase: when the database refuses a batch (here a
// check added behind the code's back refuses one transfer's balance), that
// transfer fails alone, the others of its batch are posted, nothing of the
// refused one is written, and the writer keeps working batch after batch.
func TestBatchRefusedByDatabase(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	mustAccount(t, s, "world", "USD", 0)
	for i := range 10 {
		mustAccount(t, s, fmt.Sprintf("m%d", i), "USD", 0)
	}
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	_, err = db.Exec(ctx, `ALTER TABLE accounts ADD CONSTRAINT test_cap CHECK (id <> 'm3' OR posted < 1000)`)
	require.NoError(t, err)

	var txs []journal.Transaction
	for i := range 10 {
		amount := int64(100)
		if i == 3 {
			amount = 5000
		}
		txs = append(txs, transfer(fmt.Sprintf("t%d", i), "world", fmt.Sprintf("m%d", i), amount))
	}
	for round := range 3 {
		for i, err := range postAll(t, s, txs) {
			if i == 3 {
				require.Error(t, err, "round %d: the refused transfer", round)
				continue
			}
			require.NoError(t, err, "round %d: transfer %d", round, i)
		}
		for i := range txs {
			txs[i].ID = fmt.Sprintf("r%d-%d", round, i)
		}
	}
	for i := range 10 {
		a, err := s.Account(ctx, fmt.Sprintf("m%d", i))
		require.NoError(t, err)
		want := int64(300)
		if i == 3 {
			want = 0
		}
		require.Equal(t, want, a.Balance.Posted, "m%d", i)
	}
	_, err = s.Post(ctx, transfer("after", "world", "m0", 1))
	require.NoError(t, err)
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
	require.EqualValues(t, 3*9+1, rep.Transactions)
}
