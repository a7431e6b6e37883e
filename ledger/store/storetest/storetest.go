// Package storetest is the conformance suite of ledger journals (PostgreSQL
// and SQLite), so the two never drift.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
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
	if _, err := s.CreateAccount(ctx, journal.Account{ID: id, Currency: cur, Flags: flags}); err != nil {
		t.Fatal(err)
	}
}

// Transfer is a two-posting USD transaction.
func Transfer(id, from, to string, amount int64) journal.Transaction {
	return journal.Transaction{ID: id, Postings: []journal.Posting{{AccountID: from, Amount: -amount, Currency: "USD"}, {AccountID: to, Amount: amount, Currency: "USD"}}}
}

func bal(t *testing.T, s store.Store, id string) journal.Balance {
	t.Helper()
	a, err := s.Account(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

func verifyClean(t *testing.T, s store.Store, wantTx int64) {
	t.Helper()
	rep, err := s.Verify(ctx)
	if err != nil || len(rep.Problems) != 0 || (wantTx >= 0 && rep.Transactions != wantTx) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func testAccounts(t *testing.T, s store.Store) {
	mustAccount(t, s, "a", "USD", 0)
	mustAccount(t, s, "a", "USD", 0) // the same again: fine
	if _, err := s.CreateAccount(ctx, journal.Account{ID: "a", Currency: "EUR"}); !errors.Is(err, journal.ErrDuplicateAccountID) {
		t.Fatalf("same id, other account: %v", err)
	}
	if _, err := s.Account(ctx, "nope"); !errors.Is(err, journal.ErrUnknownAccount) {
		t.Fatalf("unknown account: %v", err)
	}
}

func testPost(t *testing.T, s store.Store) {
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "merchant", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "eur", "EUR", 0)
	if _, err := s.Post(ctx, Transfer("t1", "world", "merchant", 1000)); err != nil {
		t.Fatal(err)
	}
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
			if _, err := s.Post(ctx, tt.tx); !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if bal(t, s, "merchant").Posted != 1000 || bal(t, s, "world").Posted != -1000 {
				t.Fatal("a refused transaction changed a balance")
			}
		})
	}
	r, err := s.Post(ctx, Transfer("t1", "world", "merchant", 1000))
	if err != nil || !r.Replayed || r.Transaction.Seq != 1 || bal(t, s, "merchant").Posted != 1000 {
		t.Fatalf("replay: %+v %v", r, err)
	}
	if _, err := s.Post(ctx, Transfer("t6", "merchant", "world", 300)); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, "merchant", 0, 10)
	if err != nil || len(h) != 2 || h[0].Amount != 1000 || h[1].Amount != -300 || h[1].TransactionID != "t6" {
		t.Fatalf("history %+v %v", h, err)
	}
	if page, _ := s.History(ctx, "merchant", h[0].Seq, 10); len(page) != 1 || page[0].Seq != h[1].Seq {
		t.Fatalf("cursor page %+v", page)
	}
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
	if _, err := s.Post(ctx, Transfer("fund", "world", "customer", 1000)); err != nil {
		t.Fatal(err)
	}
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
			if _, err := s.Post(ctx, st.tx); !errors.Is(err, st.err) && !(err == nil && st.err == nil) {
				t.Fatalf("err = %v, want %v", err, st.err)
			}
			for id, want := range st.want {
				if got := bal(t, s, id); got != want {
					t.Fatalf("%s: %+v, want %+v", id, got, want)
				}
			}
		})
	}
	if r, err := s.Post(ctx, post("cap1", "auth1", 500)); err != nil || !r.Replayed {
		t.Fatalf("retried post: %+v %v", r, err)
	}
	if n, err := s.ExpirePending(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	if n, _ := s.ExpirePending(ctx, time.Now()); n != 0 {
		t.Fatalf("second sweep voided %d", n)
	}
	if got := bal(t, s, "customer"); got != (journal.Balance{Posted: 500}) {
		t.Fatalf("customer after expiry: %+v", got)
	}
	verifyClean(t, s, -1)
	if h, _ := s.History(ctx, "customer", 0, 100); len(h) != 2 {
		t.Fatalf("history %+v (holds post nothing)", h)
	}
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
		t.Fatal(err)
	}
	var want int64
	for i := 0; i < each; i++ {
		if i%2 == 0 {
			want -= int64(i + 1)
		} else {
			want += int64(i + 1)
		}
	}
	if got := bal(t, s, "hot").Posted; got != want*clients {
		t.Fatalf("hot balance %d, want %d (a lost update)", got, want*clients)
	}
	verifyClean(t, s, clients*each)
}

func testLookups(t *testing.T, s store.Store) {
	for _, id := range []string{"m:a:pending", "m:a:available", "m:b:pending", "p:receivable", "p:fees"} {
		mustAccount(t, s, id, "USD", 0)
	}
	hold := pending("auth", "p:receivable", "m:a:pending", 1000, time.Time{})
	hold.Metadata = map[string]string{"acquirer_reference": "ref-1"}
	if _, err := s.Post(ctx, hold); err != nil {
		t.Fatal(err)
	}
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
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if b := bal(t, s, "m:a:pending"); b != (journal.Balance{PendingCredits: 1000}) {
				t.Fatalf("a refused post changed balances: %+v", b)
			}
		})
	}
	before := time.Now().Add(-time.Second)
	capture := journal.Transaction{ID: "cap", Kind: journal.KindPostPending, PendingID: "auth", Postings: fee, Metadata: map[string]string{"acquirer_reference": "ref-1", "type": "capture"}}
	if _, err := s.Post(ctx, capture); err != nil {
		t.Fatal(err)
	}
	if b := bal(t, s, "m:a:pending"); b != (journal.Balance{Posted: 747}) {
		t.Fatalf("merchant after capture with fee: %+v", b)
	}
	if b := bal(t, s, "p:fees"); b.Posted != 53 {
		t.Fatalf("fees %+v", b)
	}
	got, err := s.Transaction(ctx, "cap")
	if err != nil || len(got.Postings) != 4 || got.Metadata["type"] != "capture" || got.CreatedAt.IsZero() {
		t.Fatalf("Transaction: %+v %v", got, err)
	}
	if _, err := s.Transaction(ctx, "nope"); !errors.Is(err, store.ErrNoTransaction) {
		t.Fatalf("unknown transaction: %v", err)
	}
	found, err := s.FindTransactions(ctx, "acquirer_reference", "ref-1", 10)
	if err != nil || len(found) != 2 || found[0].ID != "auth" || found[1].ID != "cap" || len(found[1].Postings) != 4 {
		t.Fatalf("FindTransactions: %+v %v", found, err)
	}
	if none, _ := s.FindTransactions(ctx, "acquirer_reference", "ref-2", 10); len(none) != 0 {
		t.Fatalf("found %+v for an unused reference", none)
	}
	accts, err := s.Accounts(ctx, "m:a:", "", 10)
	if err != nil || len(accts) != 2 || accts[0].ID != "m:a:available" || accts[1].ID != "m:a:pending" || accts[1].Balance.Posted != 747 {
		t.Fatalf("Accounts: %+v %v", accts, err)
	}
	if page, _ := s.Accounts(ctx, "m:", "m:a:pending", 10); len(page) != 1 || page[0].ID != "m:b:pending" {
		t.Fatalf("Accounts after cursor: %+v", page)
	}
	if c, err := s.CreditsSince(ctx, "m:a:pending", before); err != nil || c != 800 {
		t.Fatalf("CreditsSince = %d, %v; want 800", c, err)
	}
	if c, _ := s.CreditsSince(ctx, "m:a:pending", time.Now().Add(time.Hour)); c != 0 {
		t.Fatalf("CreditsSince(future) = %d", c)
	}
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
		if _, err := s.Post(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	after := ""
	for {
		page, err := s.PaymentIDs(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1]
	}
	if fmt.Sprint(all) != "[pay_a pay_b pay_c]" {
		t.Fatalf("PaymentIDs = %v, want each payment once, in order", all)
	}
	// Pending: a hold's amount and state, by the id that opened it.
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	if _, err := s.Post(ctx, journal.Transaction{ID: "hold", Kind: journal.KindPending, ExpiresAt: exp, Postings: Transfer("", "a", "b", 70).Postings}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Pending(ctx, "hold")
	if err != nil || p.Amount != 70 || p.Status != "pending" || p.Debit != "a" || p.Credit != "b" || !p.ExpiresAt.Equal(exp) {
		t.Fatalf("Pending = %+v, %v", p, err)
	}
	if _, err := s.Post(ctx, journal.Transaction{ID: "void", Kind: journal.KindVoidPending, PendingID: "hold"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Pending(ctx, "hold"); p.Status != "voided" {
		t.Fatalf("Pending after void = %+v", p)
	}
	if _, err := s.Pending(ctx, "t0"); !errors.Is(err, store.ErrNoTransaction) {
		t.Fatalf("Pending(not a hold) = %v", err)
	}
}
