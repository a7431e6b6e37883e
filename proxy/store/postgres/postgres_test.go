package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/service"
	"github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/proxy/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// database is a fresh, migrated gateway database.
func database(t *testing.T) string {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	return testenv.SharedPostgres(t).NewDatabase(t, "gateway", postgres.MigrateURL)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		s, err := postgres.Open(context.Background(), database(t))
		require.NoError(t, err)
		return s
	})
}

func TestMigrateTwiceIsNoop(t *testing.T) {
	url := database(t)
	for i := range 2 {
		require.NoError(t, postgres.MigrateURL(context.Background(), url), "migrate run %d", i+1)
	}
}

// TestReadOnly: the reconciliation's connection reads and cannot write,
// also through the multi-host URL form of a primary with a standby
// (target_session_attrs=read-write; the read-only session used to look
// like a standby on every host: "read only connection").
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	url := database(t)
	rw, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	defer rw.Close()
	p := &service.Payment{ID: "pay_1", MerchantID: "mer_1", Status: service.StatusAuthorized, Amount: 100, Currency: "USD", Token: "tok_1", Acquirer: "simulator", Version: 1}
	require.NoError(t, rw.Insert(ctx, p))

	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	cases := []struct{ name, url string }{
		{"plain URL", url},
		{"target_session_attrs=read-write", url + sep + "target_session_attrs=read-write"},
	}
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ro, err := postgres.OpenReadOnly(ctx, tt.url)
			require.NoError(t, err)
			defer ro.Close()
			got, err := ro.PaymentsAfter(ctx, "", 10)
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, "pay_1", got[0].ID)
			q := *p
			q.ID = fmt.Sprintf("pay_ro_%d", i)
			assert.ErrorContains(t, ro.Insert(ctx, &q), "read-only", "a write on the read-only connection")
		})
	}
}

func TestOpenReadOnlyUnreachable(t *testing.T) {
	_, err := postgres.OpenReadOnly(context.Background(), "postgres://127.0.0.1:1/gateway?connect_timeout=2")
	assert.ErrorContains(t, err, "gateway postgres")
}

// TestOutboxReadsByPayment: with ledger events waiting (the ledger
// unreachable), queuing a payment's ledger event and asking for its older
// events read that payment's entries through an index, never the whole
// outbox. Counted by PostgreSQL itself (pg_stat_user_tables), once the
// store's backends have exited and reported.
func TestOutboxReadsByPayment(t *testing.T) {
	ctx := context.Background()
	url := database(t)
	st, err := postgres.Open(ctx, url)
	require.NoError(t, err)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		require.NoError(t, st.AddOutbox(ctx, fmt.Sprintf("PAYMENT_EVENT_CAPTURED:pay_w%d:", i), fmt.Sprintf("pay_w%d", i), `{}`, now))
	}
	const payments = 60 // past the plan cache's five custom plans
	for i := range payments {
		id := fmt.Sprintf("pay_%d", i)
		p := &service.Payment{ID: id, MerchantID: "mer_1", Status: service.StatusProcessing, Amount: 100, Currency: "USD", Token: "tok_1", Acquirer: "simulator",
			CreatedAt: now, UpdatedAt: now, Version: 1}
		require.NoError(t, st.Insert(ctx, p))
		p.Status, p.AmountCaptured = service.StatusCaptured, p.Amount
		ev := service.OutboxEntry{ID: "PAYMENT_EVENT_CAPTURED:" + id + ":", PaymentID: id, Request: `{}`}
		events := []service.OutboxEntry{ev}
		require.NoError(t, st.Commit(ctx, p, events, now))
		assert.True(t, events[0].First, "payment %d: no older event of its own waits", i)
		older, err := st.OlderOutbox(ctx, id, ev.ID)
		require.NoError(t, err)
		assert.Nil(t, older, "payment %d", i)
	}
	require.NoError(t, st.Close()) // the backends exit and report their counts

	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	var seq, idx int64
	require.Eventually(t, func() bool {
		_, _ = db.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		err := db.QueryRow(ctx, `SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'ledger_outbox'`).Scan(&seq, &idx)
		return err == nil && idx >= 2*payments
	}, 20*time.Second, 50*time.Millisecond, "the store's backends did not report their index scans")
	assert.Zero(t, seq, "whole-outbox scans by %d payments (%d index scans)", payments, idx)
}
