package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
)

// BenchmarkCreateToken measures durable token inserts against real
// PostgreSQL (fsync and synchronous_commit on) from 32 concurrent callers,
// and reports the cost per token: CPU-ms of this process and of the
// PostgreSQL cluster, PostgreSQL transactions (commits) and WAL fsyncs.
func BenchmarkCreateToken(b *testing.B) {
	for _, c := range []struct {
		name string
		opts postgres.Options
	}{
		{"default", postgres.Options{}},
		{"flushers=1,linger=250µs", postgres.Options{CreateFlushers: 1, CreateLinger: 250 * time.Microsecond}},
		{"flushers=2,no_linger", postgres.Options{CreateFlushers: 2, CreateLinger: -1}},
		{"flushers=4,no_linger", postgres.Options{CreateFlushers: 4, CreateLinger: -1}},
		{"flushers=8,no_linger", postgres.Options{CreateFlushers: 8, CreateLinger: -1}},
		{"flushers=16,no_linger", postgres.Options{CreateFlushers: 16, CreateLinger: -1}},
	} {
		b.Run(c.name, func(b *testing.B) { benchmarkCreateToken(b, c.opts) })
	}
}

func benchmarkCreateToken(b *testing.B, opts postgres.Options) {
	pg := testenv.SharedPostgres(b)
	url := pg.NewDatabase(b, "vault", postgres.MigrateURL)
	s, err := postgres.Open(context.Background(), url, opts)
	require.NoError(b, err)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	require.NoError(b, s.CreateMerchant(ctx, store.Merchant{ID: "mer_b", Name: "b", CreatedAt: now}, nil))
	require.NoError(b, s.InsertDEK(ctx, envelope.DEKRecord{ID: "dek_b", Wrapped: "vault:v1:x", KEKVersion: 1, CreatedAt: now}))
	db, err := pgx.Connect(ctx, url)
	require.NoError(b, err)
	defer db.Close(ctx)
	var n atomic.Int64
	ct := make([]byte, 80)
	b.SetParallelism(16) // 2 cores × 16 = 32 callers
	c0 := sampleCost(b, ctx, db)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := store.TokenRecord{Token: fmt.Sprintf("tok_%d", i), MerchantID: "mer_b", DEKID: "dek_b", Ciphertext: ct, Brand: "visa", BIN: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: fmt.Sprintf("fp_%d", i), CreatedAt: now}
			require.NoError(b, s.CreateToken(ctx, r, nil))
		}
	})
	b.StopTimer()
	c1 := sampleCost(b, ctx, db)
	ops := float64(b.N)
	b.ReportMetric(float64((c1.self-c0.self).Microseconds())/1000/ops, "go_cpu_ms/token")
	if c0.pgOK && c1.pgOK {
		b.ReportMetric(float64((c1.pg-c0.pg).Microseconds())/1000/ops, "pg_cpu_ms/token")
	}
	// The sampling queries' own commits are negligible against b.N.
	b.ReportMetric(float64(c1.commits-c0.commits)/ops, "pg_commits/token")
	b.ReportMetric(float64(c1.walSyncs-c0.walSyncs)/ops, "wal_fsyncs/token")
}

type cost struct {
	self, pg          time.Duration
	pgOK              bool
	commits, walSyncs int64
}

func sampleCost(b *testing.B, ctx context.Context, db *pgx.Conn) cost {
	var c cost
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var backend int
	require.NoError(b, db.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend))
	require.NoError(b, db.QueryRow(ctx, `SELECT pg_stat_force_next_flush()`).Scan(new(any)))
	require.NoError(b, db.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&c.commits))
	require.NoError(b, db.QueryRow(ctx, `SELECT wal_sync FROM pg_stat_wal`).Scan(&c.walSyncs))
	c.pg, c.pgOK = testenv.PostgresCPU(backend)
	return c
}
