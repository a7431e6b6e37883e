package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// BenchmarkTransfers measures transfers/s against real PostgreSQL (fsync and
// synchronous_commit on) from 32 concurrent clients, spread over 10,000
// accounts and with every transfer touching one hot account. It reports the
// writer's transfers, statements and round trips per batch, and verifies
// the journal (hash chain, balances) after the load. Run it with a fixed
// count, e.g. -benchtime=20000x (with -benchtime=3x it posts 3 transfers).
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
			db.Close(ctx)
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
			st := s.Stats()
			if batches := float64(st.Batches - st0.Batches); batches > 0 {
				b.ReportMetric(float64(st.Items-st0.Items)/batches, "transfers/batch")
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
