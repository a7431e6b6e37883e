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
	"github.com/stretchr/testify/require"
)

// BenchmarkTransfers measures transfers/s against real PostgreSQL (fsync and
// synchronous_commit on) from 32 concurrent clients, spread over 10,000
// accounts and with every transfer touching one hot account.
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
				_, err := s.CreateAccount(ctx, journal.Account{ID: fmt.Sprintf("a%05d", i), Currency: "USD"})
				require.NoError(b, err)
			}
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
					_, err := s.Post(ctx, transfer(fmt.Sprintf("b%d", i), from, to, 1))
					require.NoError(b, err)
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			el := time.Since(start)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(len(lat))/el.Seconds(), "transfers/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
		})
	}
}
