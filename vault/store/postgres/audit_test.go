package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
)

// Two stores on one database stand for two vaultd replicas: each appends
// after the head it wrote last until the other moves it, and the chain
// stays one unbroken chain whoever appends, in turns or at once.
func TestAuditChainAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	url := testenv.SharedPostgres(t).NewDatabase(t, "vault", postgres.MigrateURL)
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 8})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open(), open()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(i int) []audit.Event {
		return []audit.Event{{At: t0.Add(time.Duration(i) * time.Microsecond), Actor: "test", Action: audit.ActionDetokenize, MerchantID: "mer_1", Token: fmt.Sprintf("tok_%d", i)}}
	}
	n := 0
	for _, s := range []*postgres.Store{a, a, a, b, b, a, b, a, a} {
		n++
		got, err := s.AppendAudit(ctx, ev(n))
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.EqualValues(t, n, got[0].Seq, "append %d", n)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		s := []*postgres.Store{a, b}[w%2]
		wg.Go(func() {
			for i := range 25 {
				_, err := s.AppendAudit(ctx, ev(1000*(w+1)+i))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	n += 8 * 25

	all, err := a.ListAudit(ctx, store.AuditFilter{Limit: 10_000})
	require.NoError(t, err)
	require.Len(t, all, n)
	var v audit.Verifier
	for _, e := range all {
		v.Add(e)
	}
	assert.Empty(t, v.Problems)
	head, err := b.AuditHead(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, n, head.Seq)
}

// TestAuditAppendReadsByKey: an append checks the chain's head through
// the primary key, never by scanning audit_events (a scan per reveal batch
// grows with every event ever written). Counted by PostgreSQL itself
// (pg_stat_user_tables), once the store's backends have exited and
// reported.
func TestAuditAppendReadsByKey(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	url := testenv.SharedPostgres(t).NewDatabase(t, "vault", postgres.MigrateURL)
	s, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 8})
	require.NoError(t, err)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const appends = 60 // past the plan cache's five custom plans
	for i := range appends {
		_, err := s.AppendAudit(ctx, []audit.Event{{At: t0.Add(time.Duration(i) * time.Microsecond), Actor: "test", Action: audit.ActionDetokenize,
			MerchantID: "mer_1", Token: fmt.Sprintf("tok_%d", i)}})
		require.NoError(t, err)
	}
	require.NoError(t, s.Close()) // the backends exit and report their counts

	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(ctx)
	var seq, idx int64
	require.Eventually(t, func() bool {
		_, _ = db.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		err := db.QueryRow(ctx, `SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'audit_events'`).Scan(&seq, &idx)
		return err == nil && idx >= appends
	}, 20*time.Second, 50*time.Millisecond, "the store's backends did not report their index scans")
	assert.Zero(t, seq, "whole-table scans of audit_events by %d appends (%d index scans)", appends, idx)
}
