package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/journal"
)

func pending(id, from, to string, amount int64, expires time.Time) journal.Transaction {
	t := transfer(id, from, to, amount)
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

func bal(t *testing.T, s interface {
	Account(context.Context, string) (journal.Account, error)
}, id string) journal.Balance {
	t.Helper()
	a, err := s.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

func TestTwoPhase(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "customer", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "merchant", "USD", 0)
	if _, err := s.Post(ctx, transfer("fund", "world", "customer", 1000)); err != nil {
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
		{"a posted transfer cannot spend held funds", transfer("spend", "customer", "world", 301), journal.ErrInsufficientFunds, nil},
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
	t.Run("retried post replays", func(t *testing.T) {
		r, err := s.Post(ctx, post("cap1", "auth1", 500))
		if err != nil || !r.Replayed {
			t.Fatalf("%+v %v", r, err)
		}
	})
	t.Run("expiry sweeper voids expired holds once", func(t *testing.T) {
		n, err := s.ExpirePending(ctx, time.Now())
		if err != nil || n != 1 {
			t.Fatalf("expired %d, %v", n, err)
		}
		if n, _ := s.ExpirePending(ctx, time.Now()); n != 0 {
			t.Fatalf("second sweep voided %d", n)
		}
		if got := bal(t, s, "customer"); got != (journal.Balance{Posted: 500}) {
			t.Fatalf("customer after expiry: %+v", got)
		}
	})
	rep, err := s.Verify(ctx)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	h, _ := s.History(ctx, "customer", 0, 100)
	if len(h) != 2 { // the funding and the capture; holds post nothing
		t.Fatalf("history %+v", h)
	}
}
