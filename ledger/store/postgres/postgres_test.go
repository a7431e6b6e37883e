package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(t *testing.T) (*postgres.Store, string) { return openB(t) }

func openB(t testing.TB) (*postgres.Store, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "ledger", postgres.MigrateURL)
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}

func mustAccount(t *testing.T, s *postgres.Store, id, cur string, flags int) {
	t.Helper()
	if _, err := s.CreateAccount(context.Background(), journal.Account{ID: id, Currency: cur, Flags: flags}); err != nil {
		t.Fatal(err)
	}
}

func transfer(id, from, to string, amount int64) journal.Transaction {
	return journal.Transaction{ID: id, Postings: []journal.Posting{{AccountID: from, Amount: -amount, Currency: "USD"}, {AccountID: to, Amount: amount, Currency: "USD"}}}
}

func balance(t *testing.T, s *postgres.Store, id string) int64 {
	t.Helper()
	a, err := s.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance.Posted
}

func TestPostAndInvariants(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "merchant", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "eur", "EUR", 0)
	if _, err := s.Post(ctx, transfer("t1", "world", "merchant", 1000)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tx   journal.Transaction
		err  error
	}{
		{"overdraw a protected account", transfer("t2", "merchant", "world", 1001), journal.ErrInsufficientFunds},
		{"unknown account", transfer("t3", "nobody", "world", 1), journal.ErrUnknownAccount},
		{"currency mismatch", journal.Transaction{ID: "t4", Postings: []journal.Posting{{AccountID: "eur", Amount: -1, Currency: "USD"}, {AccountID: "world", Amount: 1, Currency: "USD"}}}, journal.ErrCurrencyMismatch},
		{"unbalanced", journal.Transaction{ID: "t5", Postings: []journal.Posting{{AccountID: "world", Amount: -2, Currency: "USD"}, {AccountID: "merchant", Amount: 1, Currency: "USD"}}}, journal.ErrUnbalanced},
		{"same id, other content", transfer("t1", "world", "merchant", 5), journal.ErrIdempotencyReused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Post(ctx, tt.tx); !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if balance(t, s, "merchant") != 1000 || balance(t, s, "world") != -1000 {
				t.Fatal("a refused transaction changed a balance")
			}
		})
	}
	t.Run("replay returns the first result", func(t *testing.T) {
		r, err := s.Post(ctx, transfer("t1", "world", "merchant", 1000))
		if err != nil || !r.Replayed || r.Transaction.Seq != 1 || balance(t, s, "merchant") != 1000 {
			t.Fatalf("replay: %+v %v", r, err)
		}
	})
	t.Run("history", func(t *testing.T) {
		_, _ = s.Post(ctx, transfer("t6", "merchant", "world", 300))
		h, err := s.History(ctx, "merchant", 0, 10)
		if err != nil || len(h) != 2 || h[0].Amount != 1000 || h[1].Amount != -300 || h[1].TransactionID != "t6" {
			t.Fatalf("history %+v %v", h, err)
		}
		page, _ := s.History(ctx, "merchant", h[0].Seq, 10)
		if len(page) != 1 || page[0].Seq != h[1].Seq {
			t.Fatalf("cursor page %+v", page)
		}
	})
	t.Run("the database refuses what the code would", func(t *testing.T) {
		db, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		bad := []struct{ name, sql string }{
			{"edit a posting", `UPDATE postings SET amount = amount + 1 WHERE seq = 1 AND idx = 0`},
			{"delete a transaction", `DELETE FROM transactions WHERE seq = 1`},
			{"negative protected balance", `UPDATE accounts SET posted = -1 WHERE id = 'merchant'`},
			{"posting in another currency than its account", `INSERT INTO transactions VALUES (99, 'x', '\x00', '', '{}', '\x00', '\x00', now()); INSERT INTO postings VALUES (99, 0, 'eur', -1, 'USD'), (99, 1, 'world', 1, 'USD')`},
			{"unbalanced transaction", `BEGIN; INSERT INTO transactions VALUES (98, 'y', '\x00', '', '{}', '\x00', '\x00', now()); INSERT INTO postings VALUES (98, 0, 'world', -2, 'USD'), (98, 1, 'merchant', 1, 'USD'); COMMIT`},
		}
		for _, b := range bad {
			if _, err := db.Exec(ctx, b.sql); err == nil {
				t.Errorf("%s: accepted", b.name)
			}
			_, _ = db.Exec(ctx, `ROLLBACK`)
		}
	})
	rep, err := s.Verify(ctx)
	if err != nil || len(rep.Problems) != 0 || rep.Transactions != 2 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestConcurrentHotAccount: many clients post against one hot account at
// once; no update is lost, money is conserved, and the journal verifies.
func TestConcurrentHotAccount(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	mustAccount(t, s, "hot", "USD", 0)
	const clients, each = 32, 25
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
				if _, err := s.Post(ctx, transfer(fmt.Sprintf("c%d-%d", c, i), from, to, int64(i+1))); err != nil {
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
	// Each client moved -1+2-3+4... : hot receives sum over pairs = +1 per pair... compute exactly.
	var wantHot int64
	for i := 0; i < each; i++ {
		if i%2 == 0 {
			wantHot -= int64(i + 1)
		} else {
			wantHot += int64(i + 1)
		}
	}
	wantHot *= clients
	if got := balance(t, s, "hot"); got != wantHot {
		t.Fatalf("hot balance %d, want %d (a lost update)", got, wantHot)
	}
	rep, err := s.Verify(ctx)
	if err != nil || len(rep.Problems) != 0 || rep.Transactions != clients*each {
		t.Fatalf("verify: %d transactions, problems %v, %v", rep.Transactions, rep.Problems, err)
	}
}

// TestVerifyDetectsTampering: with the immutability triggers disabled (an
// attacker with owner rights), edits are found by Verify.
func TestVerifyDetectsTampering(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	mustAccount(t, s, "a", "USD", 0)
	mustAccount(t, s, "b", "USD", 0)
	for i := 0; i < 3; i++ {
		if _, err := s.Post(ctx, transfer(fmt.Sprintf("t%d", i), "a", "b", 100)); err != nil {
			t.Fatal(err)
		}
	}
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	for _, q := range []string{
		`ALTER TABLE postings DISABLE TRIGGER postings_immutable`,
		`UPDATE postings SET amount = -150 WHERE seq = 2 AND idx = 0`,
		`UPDATE postings SET amount = 150 WHERE seq = 2 AND idx = 1`,
		`UPDATE accounts SET posted = posted + 1 WHERE id = 'b'`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.Verify(ctx)
	if err != nil || len(rep.Problems) < 2 {
		t.Fatalf("tampering not found: %+v %v", rep, err)
	}
}
