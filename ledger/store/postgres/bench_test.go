package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/journal"
)

// BenchmarkTransfers measures transfers/s against real PostgreSQL (fsync and
// synchronous_commit on) from 32 concurrent clients, spread over 10,000
// accounts and with every transfer touching one hot account. It reports the
// writer's transfers, statements and round trips per batch, and verifies
// the journal (hash chain, balances) after the load. Run it with a fixed
// count, e.g. -benchtime=20000x (with -benchtime=3x it posts 3 transfers).
func BenchmarkTransfers(b *testing.B) {
	for _, hot := range []bool{false, true} {
		name := "spread_10000_accounts"
		if hot {
			name = "hot_account"
		}
		b.Run(name, func(b *testing.B) {
			s, _ := openB(b)
			ctx := context.Background()
			const n = 10000
			for i := 0; i < n; i++ {
				if _, err := s.CreateAccount(ctx, journal.Account{ID: fmt.Sprintf("a%05d", i), Currency: "USD"}); err != nil {
					b.Fatal(err)
				}
			}
			st0 := s.Stats()
			var seq atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(16) // 2 cores × 16 = 32 clients
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
					if _, err := s.Post(ctx, transfer(fmt.Sprintf("b%d", i), from, to, 1)); err != nil {
						b.Fatal(err)
					}
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
			if err != nil || len(rep.Problems) > 0 || rep.Transactions != int64(b.N) {
				b.Fatalf("verify after %d transfers: %d transactions, problems %v, %v", b.N, rep.Transactions, rep.Problems, err)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/el.Seconds(), "transfers/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
		})
	}
}
