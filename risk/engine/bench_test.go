package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/engine"
	"github.com/obolpay/obol/risk/features"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// BenchmarkEvaluateRedis: the engine in-process (no gRPC) with the default
// rules and real Redis features (one script call per evaluation), 32
// goroutines. Reports evals/s, p50, p99.
func BenchmarkEvaluateRedis(b *testing.B) {
	rdb := testenv.SharedRedis(b).Client(b)
	benchEvaluate(b, features.NewRedis(rdb, fmt.Sprintf("obol:bench:%d:", time.Now().UnixNano())))
}

// BenchmarkEvaluateAggregated: the same with riskd's store (local counts,
// synced with Redis every 20 ms).
func BenchmarkEvaluateAggregated(b *testing.B) {
	rdb := testenv.SharedRedis(b).Client(b)
	v := features.NewAggregated(rdb, fmt.Sprintf("obol:bench:%d:", time.Now().UnixNano()), features.AggregatedOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	require.NoError(b, v.Sync(ctx), "first sync") // riskd's start does it
	benchEvaluate(b, v)
	n := max(v.Stats.Syncs.Load(), 1)
	b.ReportMetric(float64(v.Stats.Synced.Load())/float64(n), "payments/sync")
	b.ReportMetric(float64(v.Stats.SyncNanos.Load())/1e6/float64(n), "ms/sync")
	b.ReportMetric(float64(v.Stats.Waits.Load())/float64(b.N), "waits/op")
}

func benchEvaluate(b *testing.B, fs features.Store) {
	e, err := engine.New(context.Background(), engine.Config{Features: fs, State: engine.NewMemoryState(1000), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Watch(ctx, time.Hour)
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			card := rand.IntN(20000)
			p := &riskv1.Payment{MerchantId: fmt.Sprintf("mer_%d", rand.IntN(50)), Amount: 2500, Currency: "USD", Bin: "424242", Fingerprint: fmt.Sprintf("fp_%d", card),
				CustomerIp: fmt.Sprintf("192.0.2.%d", rand.IntN(250)), DeviceId: fmt.Sprintf("dev_%d", card%5000), EmailHash: fmt.Sprintf("em_%d", card%8000)}
			t0 := time.Now()
			d := e.Evaluate(ctx, p, false)
			require.False(b, d.GetFallback(), "fallback")
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	el := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(len(lat))/el.Seconds(), "evals/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
}
