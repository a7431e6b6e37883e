// Package storetest is the conformance suite of ledger journals (PostgreSQL
// and SQLite), so the two never drift.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Run runs the suite; newStore returns an empty, migrated journal per call.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"post, invariants, replay, history", testPost},
		{"two-phase transfers", testTwoPhase},
		{"concurrent hot account", testHotAccount},
		{"idempotent account creation", testAccounts},
		{"post a hold with extra legs; lookups", testLookups},
		{"payment ids", testPaymentIDs},
		{"disputes: create, compare-and-set, list", testDisputes},
		{"event outbox", testOutbox},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var ctx = context.Background()

func mustAccount(t *testing.T, s store.Store, id, cur string, flags int) {
	t.Helper()
	_, err := s.CreateAccount(ctx, journal.Account{ID: id, Currency: cur, Flags: flags})
	require.NoError(t, err)
}

// Transfer is a two-posting USD transaction.
func Transfer(id, from, to string, amount int64) journal.Transaction {
	return journal.Transaction{ID: id, Postings: []journal.Posting{{AccountID: from, Amount: -amount, Currency: "USD"}, {AccountID: to, Amount: amount, Currency: "USD"}}}
}

func bal(t *testing.T, s store.Store, id string) journal.Balance {
	t.Helper()
	a, err := s.Account(ctx, id)
	require.NoError(t, err)
	return a.Balance
}

func verifyClean(t *testing.T, s store.Store, wantTx int64) {
	t.Helper()
	rep, err := s.Verify(ctx)
	require.NoError(t, err, "verify")
	require.Empty(t, rep.Problems, "verify")
	if wantTx >= 0 {
		require.Equal(t, wantTx, rep.Transactions, "verify: transactions")
	}
}

func testAccounts(t *testing.T, s store.Store) {
	mustAccount(t, s, "a", "USD", 0)
	mustAccount(t, s, "a", "USD", 0) // the same again: fine
	_, err := s.CreateAccount(ctx, journal.Account{ID: "a", Currency: "EUR"})
	require.ErrorIs(t, err, journal.ErrDuplicateAccountID, "same id, other account")
	_, err = s.Account(ctx, "nope")
	require.ErrorIs(t, err, journal.ErrUnknownAccount, "unknown account")
}

func testPost(t *testing.T, s store.Store) {
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "merchant", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "eur", "EUR", 0)
	_, err := s.Post(ctx, Transfer("t1", "world", "merchant", 1000))
	require.NoError(t, err)
	bad := []struct {
		name string
		tx   journal.Transaction
		err  error
	}{
		{"overdraw a protected account", Transfer("t2", "merchant", "world", 1001), journal.ErrInsufficientFunds},
		{"unknown account", Transfer("t3", "nobody", "world", 1), journal.ErrUnknownAccount},
		{"currency mismatch", journal.Transaction{ID: "t4", Postings: []journal.Posting{{AccountID: "eur", Amount: -1, Currency: "USD"}, {AccountID: "world", Amount: 1, Currency: "USD"}}}, journal.ErrCurrencyMismatch},
		{"unbalanced", journal.Transaction{ID: "t5", Postings: []journal.Posting{{AccountID: "world", Amount: -2, Currency: "USD"}, {AccountID: "merchant", Amount: 1, Currency: "USD"}}}, journal.ErrUnbalanced},
		{"same id, other content", Transfer("t1", "world", "merchant", 5), journal.ErrIdempotencyReused},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Post(ctx, tt.tx)
			require.ErrorIs(t, err, tt.err)
			assert.EqualValues(t, 1000, bal(t, s, "merchant").Posted, "a refused transaction changed a balance")
			assert.EqualValues(t, -1000, bal(t, s, "world").Posted, "a refused transaction changed a balance")
		})
	}
	r, err := s.Post(ctx, Transfer("t1", "world", "merchant", 1000))
	require.NoError(t, err, "replay")
	assert.True(t, r.Replayed, "replay")
	assert.EqualValues(t, 1, r.Transaction.Seq, "replay")
	assert.EqualValues(t, 1000, bal(t, s, "merchant").Posted, "replay")
	_, err = s.Post(ctx, Transfer("t6", "merchant", "world", 300))
	require.NoError(t, err)
	h, err := s.History(ctx, "merchant", 0, 10)
	require.NoError(t, err)
	require.Len(t, h, 2, "history")
	assert.EqualValues(t, 1000, h[0].Amount, "history")
	assert.EqualValues(t, -300, h[1].Amount, "history")
	assert.Equal(t, "t6", h[1].TransactionID, "history")
	page, _ := s.History(ctx, "merchant", h[0].Seq, 10)
	require.Len(t, page, 1, "cursor page")
	assert.Equal(t, h[1].Seq, page[0].Seq, "cursor page")
	verifyClean(t, s, 2)
}

func pending(id, from, to string, amount int64, expires time.Time) journal.Transaction {
	t := Transfer(id, from, to, amount)
	t.Kind, t.ExpiresAt = journal.KindPending, expires
	return t
}

func post(id, pendingID string, amount int64) journal.Transaction {
	t := journal.Transaction{ID: id, Kind: journal.KindPostPending, PendingID: pendingID}
	if amount > 0 {
		t.Postings = []journal.Posting{{Amount: amount}}
	}
	return t
}

func testTwoPhase(t *testing.T, s store.Store) {
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "customer", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "merchant", "USD", 0)
	_, err := s.Post(ctx, Transfer("fund", "world", "customer", 1000))
	require.NoError(t, err)
	steps := []struct {
		name string
		tx   journal.Transaction
		err  error
		want map[string]journal.Balance
	}{
		{"hold 700", pending("auth1", "customer", "merchant", 700, time.Time{}), nil,
			map[string]journal.Balance{"customer": {Posted: 1000, PendingDebits: 700}, "merchant": {PendingCredits: 700}}},
		{"a second hold above what is available", pending("auth2", "customer", "merchant", 301, time.Time{}), journal.ErrInsufficientFunds, nil},
		{"a posted transfer cannot spend held funds", Transfer("spend", "customer", "world", 301), journal.ErrInsufficientFunds, nil},
		{"post more than held", post("cap-too-much", "auth1", 701), journal.ErrPostExceedsPending, nil},
		{"partial post releases the whole hold", post("cap1", "auth1", 500), nil,
			map[string]journal.Balance{"customer": {Posted: 500}, "merchant": {Posted: 500}}},
		{"post again", post("cap1-again", "auth1", 100), journal.ErrPendingClosed, nil},
		{"hold then void", pending("auth3", "customer", "merchant", 200, time.Time{}), nil,
			map[string]journal.Balance{"customer": {Posted: 500, PendingDebits: 200}}},
		{"void", journal.Transaction{ID: "void3", Kind: journal.KindVoidPending, PendingID: "auth3"}, nil,
			map[string]journal.Balance{"customer": {Posted: 500}, "merchant": {Posted: 500}}},
		{"void unknown", journal.Transaction{ID: "void9", Kind: journal.KindVoidPending, PendingID: "nope"}, journal.ErrPendingNotFound, nil},
		{"expired hold", pending("auth4", "customer", "merchant", 100, time.Now().Add(-time.Second)), nil, nil},
		{"post an expired hold", post("cap4", "auth4", 0), journal.ErrPendingExpired,
			map[string]journal.Balance{"customer": {Posted: 500, PendingDebits: 100}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			_, err := s.Post(ctx, st.tx)
			require.ErrorIs(t, err, st.err) // errors.Is(nil, nil) holds: a nil want needs a nil error
			for id, want := range st.want {
				require.Equal(t, want, bal(t, s, id), id)
			}
		})
	}
	r, err := s.Post(ctx, post("cap1", "auth1", 500))
	require.NoError(t, err, "retried post")
	require.True(t, r.Replayed, "retried post")
	n, err := s.ExpirePending(ctx, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "expired")
	n, _ = s.ExpirePending(ctx, time.Now())
	require.EqualValues(t, 0, n, "second sweep voided some")
	require.Equal(t, journal.Balance{Posted: 500}, bal(t, s, "customer"), "customer after expiry")
	verifyClean(t, s, -1)
	h, _ := s.History(ctx, "customer", 0, 100)
	require.Len(t, h, 2, "history (holds post nothing)")
}

func testHotAccount(t *testing.T, s store.Store) {
	mustAccount(t, s, "hot", "USD", 0)
	const clients, each = 16, 20
	for c := 0; c < clients; c++ {
		mustAccount(t, s, fmt.Sprintf("acct_%d", c), "USD", 0)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				from, to := "hot", fmt.Sprintf("acct_%d", c)
				if i%2 == 1 {
					from, to = to, from
				}
				if _, err := s.Post(ctx, Transfer(fmt.Sprintf("c%d-%d", c, i), from, to, int64(i+1))); err != nil {
					errs <- err
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var want int64
	for i := 0; i < each; i++ {
		if i%2 == 0 {
			want -= int64(i + 1)
		} else {
			want += int64(i + 1)
		}
	}
	require.Equal(t, want*clients, bal(t, s, "hot").Posted, "hot balance (a lost update)")
	verifyClean(t, s, clients*each)
}

func testLookups(t *testing.T, s store.Store) {
	for _, id := range []string{"m:a:pending", "m:a:available", "m:b:pending", "p:receivable", "p:fees"} {
		mustAccount(t, s, id, "USD", 0)
	}
	hold := pending("auth", "p:receivable", "m:a:pending", 1000, time.Time{})
	hold.Metadata = map[string]string{"acquirer_reference": "ref-1"}
	_, err := s.Post(ctx, hold)
	require.NoError(t, err)
	fee := []journal.Posting{{Amount: 800}, {AccountID: "m:a:pending", Amount: -53, Currency: "USD"}, {AccountID: "p:fees", Amount: 53, Currency: "USD"}}
	bad := []struct {
		name string
		legs []journal.Posting
		err  error
	}{
		{"a single extra leg", []journal.Posting{{Amount: 800}, {AccountID: "p:fees", Amount: 53, Currency: "USD"}}, journal.ErrUnbalanced},
		{"extra legs that do not sum to zero", []journal.Posting{{Amount: 800}, {AccountID: "m:a:pending", Amount: -53, Currency: "USD"}, {AccountID: "p:fees", Amount: 52, Currency: "USD"}}, journal.ErrUnbalanced},
		{"extra leg on an unknown account", []journal.Posting{{Amount: 800}, {AccountID: "nope", Amount: -53, Currency: "USD"}, {AccountID: "p:fees", Amount: 53, Currency: "USD"}}, journal.ErrUnknownAccount},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Post(ctx, journal.Transaction{ID: "cap-" + tt.name, Kind: journal.KindPostPending, PendingID: "auth", Postings: tt.legs})
			require.ErrorIs(t, err, tt.err)
			require.Equal(t, journal.Balance{PendingCredits: 1000}, bal(t, s, "m:a:pending"), "a refused post changed balances")
		})
	}
	before := time.Now().Add(-time.Second)
	capture := journal.Transaction{ID: "cap", Kind: journal.KindPostPending, PendingID: "auth", Postings: fee, Metadata: map[string]string{"acquirer_reference": "ref-1", "type": "capture"}}
	_, err = s.Post(ctx, capture)
	require.NoError(t, err)
	require.Equal(t, journal.Balance{Posted: 747}, bal(t, s, "m:a:pending"), "merchant after capture with fee")
	require.EqualValues(t, 53, bal(t, s, "p:fees").Posted, "fees")
	got, err := s.Transaction(ctx, "cap")
	require.NoError(t, err)
	assert.Len(t, got.Postings, 4, "Transaction")
	assert.Equal(t, "capture", got.Metadata["type"], "Transaction")
	assert.False(t, got.CreatedAt.IsZero(), "Transaction: no CreatedAt")
	_, err = s.Transaction(ctx, "nope")
	require.ErrorIs(t, err, store.ErrNoTransaction, "unknown transaction")
	found, err := s.FindTransactions(ctx, "acquirer_reference", "ref-1", 10)
	require.NoError(t, err)
	require.Len(t, found, 2, "FindTransactions")
	assert.Equal(t, "auth", found[0].ID, "FindTransactions")
	assert.Equal(t, "cap", found[1].ID, "FindTransactions")
	assert.Len(t, found[1].Postings, 4, "FindTransactions")
	none, _ := s.FindTransactions(ctx, "acquirer_reference", "ref-2", 10)
	assert.Empty(t, none, "found transactions for an unused reference")
	accts, err := s.Accounts(ctx, "m:a:", "", 10)
	require.NoError(t, err)
	require.Len(t, accts, 2, "Accounts")
	assert.Equal(t, "m:a:available", accts[0].ID, "Accounts")
	assert.Equal(t, "m:a:pending", accts[1].ID, "Accounts")
	assert.EqualValues(t, 747, accts[1].Balance.Posted, "Accounts")
	page, _ := s.Accounts(ctx, "m:", "m:a:pending", 10)
	if assert.Len(t, page, 1, "Accounts after cursor") {
		assert.Equal(t, "m:b:pending", page[0].ID, "Accounts after cursor")
	}
	c, err := s.CreditsSince(ctx, "m:a:pending", before)
	require.NoError(t, err)
	assert.EqualValues(t, 800, c, "CreditsSince")
	c, _ = s.CreditsSince(ctx, "m:a:pending", time.Now().Add(time.Hour))
	assert.EqualValues(t, 0, c, "CreditsSince(future)")
	verifyClean(t, s, 2)
}

func testPaymentIDs(t *testing.T, s store.Store) {
	mustAccount(t, s, "a", "USD", 0)
	mustAccount(t, s, "b", "USD", 0)
	for i, pay := range []string{"pay_c", "pay_a", "", "pay_b", "pay_a"} {
		tx := Transfer(fmt.Sprintf("t%d", i), "a", "b", 1)
		if pay != "" {
			tx.Metadata = map[string]string{"payment_id": pay}
		}
		_, err := s.Post(ctx, tx)
		require.NoError(t, err)
	}
	var all []string
	after := ""
	for {
		page, err := s.PaymentIDs(ctx, after, 2)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1]
	}
	require.Equal(t, []string{"pay_a", "pay_b", "pay_c"}, all, "PaymentIDs: want each payment once, in order")
	// Pending: a hold's amount and state, by the id that opened it.
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	_, err := s.Post(ctx, journal.Transaction{ID: "hold", Kind: journal.KindPending, ExpiresAt: exp, Postings: Transfer("", "a", "b", 70).Postings})
	require.NoError(t, err)
	p, err := s.Pending(ctx, "hold")
	require.NoError(t, err)
	assert.EqualValues(t, 70, p.Amount, "Pending")
	assert.EqualValues(t, "pending", p.Status, "Pending")
	assert.Equal(t, "a", p.Debit, "Pending")
	assert.Equal(t, "b", p.Credit, "Pending")
	assert.WithinDuration(t, exp, p.ExpiresAt, 0, "Pending")
	_, err = s.Post(ctx, journal.Transaction{ID: "void", Kind: journal.KindVoidPending, PendingID: "hold"})
	require.NoError(t, err)
	p, _ = s.Pending(ctx, "hold")
	assert.EqualValues(t, "voided", p.Status, "Pending after void")
	_, err = s.Pending(ctx, "t0")
	require.ErrorIs(t, err, store.ErrNoTransaction, "Pending(not a hold)")
}
