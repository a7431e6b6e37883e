package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// BenchmarkTransfers measures transfers/s against real PostgreSQL (fsync and
// synchronous_commit on) from 32 concurrent clients, spread over 10,000
// accounts and with every transfer touching one hot account. It reports the
// writer's transfers, statements and round trips per batch, and verifies
// the journal (hash chain, balances) after the load, and the cost per
// transfer: CPU-ms of this process (the store's Go side and the clients)
// and of the PostgreSQL cluster's processes, WAL bytes, WAL records and WAL
// fsyncs (pg_stat_wal), and PostgreSQL transactions per transfer. Run it
// with a fixed count, e.g. -benchtime=20000x (with -benchtime=3x it posts
// 3 transfers).
func BenchmarkTransfers(b *testing.B) {
	cases := []struct {
		name    string
		hot     bool
		clients int
	}{
		{"spread_10000_accounts", false, 32},
		{"hot_account", true, 32},
		// More concurrent callers (gateways) make larger batches: one WAL
		// flush covers more transfers.
		{"spread_10000_accounts_256_clients", false, 256},
		{"hot_account_256_clients", true, 256},
	}
	for _, c := range cases {
		hot := c.hot
		b.Run(c.name, func(b *testing.B) {
			s, url := openB(b)
			ctx := context.Background()
			const n = 10000
			db, err := pgx.Connect(ctx, url)
			require.NoError(b, err)
			_, err = db.Exec(ctx, `INSERT INTO accounts (id, currency, created_at) SELECT 'a' || lpad(i::text, 5, '0'), 'USD', now() FROM generate_series(0, $1 - 1) AS i`, n)
			require.NoError(b, err)
			c0 := sampleCost(b, ctx, db)
			st0 := s.Stats()
			var seq atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(max(1, c.clients/runtime.GOMAXPROCS(0))) // 2 cores × 16 = 32 clients
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					i := seq.Add(1)
					from, to := fmt.Sprintf("a%05d", rand.IntN(n)), fmt.Sprintf("a%05d", rand.IntN(n))
					if hot {
						from = "a00000"
					}
					if from == to {
						to = fmt.Sprintf("a%05d", (rand.IntN(n-1)+1)%n)
					}
					t0 := time.Now()
					_, err := s.Post(ctx, transfer(fmt.Sprintf("b%d", i), from, to, 1))
					require.NoError(b, err)
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			el := time.Since(start)
			b.StopTimer()
			c1 := sampleCost(b, ctx, db)
			db.Close(ctx)
			ops := float64(b.N)
			b.ReportMetric(float64((c1.self-c0.self).Microseconds())/1000/ops, "go_cpu_ms/transfer")
			if c0.pgOK && c1.pgOK {
				b.ReportMetric(float64((c1.pg-c0.pg).Microseconds())/1000/ops, "pg_cpu_ms/transfer")
			}
			b.ReportMetric(float64(c1.walBytes-c0.walBytes)/ops, "wal_B/transfer")
			b.ReportMetric(float64(c1.walRecords-c0.walRecords)/ops, "wal_records/transfer")
			b.ReportMetric(float64(c1.walSyncs-c0.walSyncs)/ops, "wal_fsyncs/transfer")
			st := s.Stats()
			if batches := float64(st.Batches - st0.Batches); batches > 0 {
				b.ReportMetric(float64(st.Items-st0.Items)/batches, "transfers/batch")
				// One database transaction per batch (a refused batch adds
				// one per transfer, retried alone).
				b.ReportMetric(batches/ops, "pg_xacts/transfer")
				b.ReportMetric(float64(st.Statements-st0.Statements)/batches, "stmts/batch")
				b.ReportMetric(float64(st.RoundTrips-st0.RoundTrips)/batches, "roundtrips/batch")
				b.ReportMetric(float64((st.ReadTime-st0.ReadTime).Microseconds())/batches, "read_µs/batch")
				b.ReportMetric(float64((st.WriteTime-st0.WriteTime).Microseconds())/batches, "write_commit_µs/batch")
			}
			// The invariants hold after the load: chain, balances, holds.
			rep, err := s.Verify(ctx)
			require.NoError(b, err, "verify after %d transfers", b.N)
			require.Empty(b, rep.Problems, "verify after %d transfers", b.N)
			require.EqualValues(b, b.N, rep.Transactions, "one transaction per transfer")
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/el.Seconds(), "transfers/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
		})
	}
}

// cost is a sample of what a transfer costs: CPU time of this process and
// of the PostgreSQL cluster (the postmaster and its children, read from
// /proc; pgOK is false where /proc does not show them) and pg_stat_wal.
type cost struct {
	self, pg                       time.Duration
	pgOK                           bool
	walBytes, walRecords, walSyncs int64
}

func sampleCost(b *testing.B, ctx context.Context, db *pgx.Conn) cost {
	var c cost
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var backend int
	require.NoError(b, db.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend))
	require.NoError(b, db.QueryRow(ctx, `SELECT wal_bytes::bigint, wal_records, wal_sync FROM pg_stat_wal`).Scan(&c.walBytes, &c.walRecords, &c.walSyncs))
	c.pg, c.pgOK = testenv.PostgresCPU(backend)
	return c
}
