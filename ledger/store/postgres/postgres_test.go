package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/ledger/store/storetest"
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
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, url
}

func mustAccount(t *testing.T, s *postgres.Store, id, cur string, flags int) {
	t.Helper()
	_, err := s.CreateAccount(context.Background(), journal.Account{ID: id, Currency: cur, Flags: flags})
	require.NoError(t, err)
}

func transfer(id, from, to string, amount int64) journal.Transaction {
	return journal.Transaction{ID: id, Postings: []journal.Posting{{AccountID: from, Amount: -amount, Currency: "USD"}, {AccountID: to, Amount: amount, Currency: "USD"}}}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := open(t)
		return s
	})
}

// TestDatabaseRefuses: the invariants hold in the database itself, against
// direct SQL that bypasses the code.
func TestDatabaseRefuses(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	mustAccount(t, s, "world", "USD", 0)
	mustAccount(t, s, "merchant", "USD", journal.FlagNoNegativeAvailable)
	mustAccount(t, s, "eur", "EUR", 0)
	_, err := s.Post(ctx, transfer("t1", "world", "merchant", 1000))
	require.NoError(t, err)
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	bad := []struct{ name, sql string }{
		{"edit a posting", `UPDATE postings SET amount = amount + 1 WHERE seq = 1 AND idx = 0`},
		{"delete a transaction", `DELETE FROM transactions WHERE seq = 1`},
		{"negative protected balance", `UPDATE accounts SET posted = -1 WHERE id = 'merchant'`},
		{"posting in another currency than its account", `INSERT INTO transactions (seq, id, request_hash, prev_hash, hash, created_at) VALUES (99, 'x', '\x00', '\x00', '\x00', now()); INSERT INTO postings VALUES (99, 0, 'eur', -1, 'USD'), (99, 1, 'world', 1, 'USD')`},
		{"unbalanced transaction", `BEGIN; INSERT INTO transactions (seq, id, request_hash, prev_hash, hash, created_at) VALUES (98, 'y', '\x00', '\x00', '\x00', now()); INSERT INTO postings VALUES (98, 0, 'world', -2, 'USD'), (98, 1, 'merchant', 1, 'USD'); COMMIT`},
		{"posting of no transaction", `INSERT INTO postings VALUES (96, 0, 'world', -1, 'USD'), (96, 1, 'merchant', 1, 'USD')`},
		{"posting to an unknown account", `BEGIN; INSERT INTO transactions (seq, id, request_hash, prev_hash, hash, created_at) VALUES (95, 'w', '\x00', '\x00', '\x00', now()); INSERT INTO postings VALUES (95, 0, 'world', -1, 'USD'), (95, 1, 'nobody', 1, 'USD'); COMMIT`},
		{"delete an account", `DELETE FROM accounts WHERE id = 'eur'`},
		{"move an account to another currency", `UPDATE accounts SET currency = 'EUR' WHERE id = 'world'`},
		{"rename an account", `UPDATE accounts SET id = 'world2' WHERE id = 'world'`},
		{"truncate the accounts", `TRUNCATE accounts CASCADE`},
		{"truncate the journal", `TRUNCATE transactions CASCADE`},
		{"truncate the postings", `TRUNCATE postings`},
		{"a hold that posts", `BEGIN; INSERT INTO transactions (seq, id, kind, request_hash, prev_hash, hash, created_at) VALUES (97, 'z', 'pending', '\x00', '\x00', '\x00', now()); INSERT INTO postings VALUES (97, 0, 'world', -2, 'USD'), (97, 1, 'merchant', 2, 'USD'); COMMIT`},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := db.Exec(ctx, b.sql)
			require.Error(t, err, "accepted")
			assert.True(t, postgres.IsConstraint(err), "refused, but not as an invariant: %v", err)
			_, _ = db.Exec(ctx, `ROLLBACK`)
		})
	}
	rep, err := s.Verify(ctx)
	require.NoError(t, err, "verify")
	assert.Empty(t, rep.Problems, "verify")
	assert.EqualValues(t, 1, rep.Transactions, "verify")
}

// TestVerifyDetectsTampering: with the immutability triggers disabled (an
// attacker with owner rights), edits are found by Verify.
func TestVerifyDetectsTampering(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	mustAccount(t, s, "a", "USD", 0)
	mustAccount(t, s, "b", "USD", 0)
	for i := 0; i < 3; i++ {
		_, err := s.Post(ctx, transfer(fmt.Sprintf("t%d", i), "a", "b", 100))
		require.NoError(t, err)
	}
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	for _, q := range []string{
		`ALTER TABLE postings DISABLE TRIGGER postings_immutable`,
		`UPDATE postings SET amount = -150 WHERE seq = 2 AND idx = 0`,
		`UPDATE postings SET amount = 150 WHERE seq = 2 AND idx = 1`,
		`UPDATE accounts SET posted = posted + 1 WHERE id = 'b'`,
	} {
		_, err = db.Exec(ctx, q)
		require.NoError(t, err)
	}
	rep, err := s.Verify(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(rep.Problems), 2, "tampering not found: %+v", rep)
}

// TestDisputesGoForwardOnly: the database refuses a dispute whose status
// goes back or changes once closed, a skipped version, or a change of its
// amount, against direct SQL.
func TestDisputesGoForwardOnly(t *testing.T) {
	s, url := open(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	d := store.Dispute{ID: "dp_1", PaymentID: "p1", MerchantID: "mer_a", Acquirer: "simulator", AcquirerReference: "r1", Amount: 100, Fee: 15,
		Currency: "USD", Reason: "fraudulent", Status: store.DisputeNeedsResponse, CreatedAt: at}
	_, _, err := s.CreateDispute(ctx, d)
	require.NoError(t, err)
	d.Status, d.Version = store.DisputeLost, 2
	_, err = s.UpdateDispute(ctx, d)
	require.NoError(t, err)
	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	bad := []struct{ name, sql string }{
		{"reopen a closed dispute", `UPDATE disputes SET status = 'under_review', version = 3 WHERE id = 'dp_1'`},
		{"lost becomes won", `UPDATE disputes SET status = 'won', version = 3 WHERE id = 'dp_1'`},
		{"version skipped", `UPDATE disputes SET version = 5 WHERE id = 'dp_1'`},
		{"amount changed", `UPDATE disputes SET amount = 1, version = 3 WHERE id = 'dp_1'`},
		{"unknown status", `INSERT INTO disputes (id, payment_id, merchant_id, acquirer, acquirer_reference, amount, fee, currency, reason, status, version, created_at, updated_at)
			VALUES ('dp_2', 'p2', 'mer_a', 'simulator', 'r2', 1, 0, 'USD', 'general', 'open', 1, now(), now())`},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := db.Exec(ctx, b.sql)
			require.Error(t, err, "accepted")
		})
	}
	got, err := s.Dispute(ctx, "dp_1")
	require.NoError(t, err)
	assert.Equal(t, store.DisputeLost, got.Status)
	assert.EqualValues(t, 2, got.Version)
}
