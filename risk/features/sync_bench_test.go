package features_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/risk/features"
)

// BenchmarkSync: one sync of a batch of 200 payments shaped like obol-load's
// (20,000 cards, 50 merchants, 250 IPs, 8,000 e-mails, 5,000 devices), on a
// real Redis. Reports the sync's time and redis-server's script time per
// payment; the observations themselves are not timed.
func BenchmarkSync(b *testing.B) {
	rdb := testenv.SharedRedis(b).Client(b)
	ctx := context.Background()
	v := features.NewAggregated(rdb, uniqPrefix(), features.AggregatedOptions{})
	require.NoError(b, v.Sync(ctx))
	const batch = 200
	now := time.Now()
	// commandstats: calls per command, and the scripts' time (µs)
	stats := func() (map[string][2]int64, int64) {
		info, err := rdb.Info(ctx, "commandstats").Result()
		require.NoError(b, err)
		calls, usec := map[string][2]int64{}, int64(0)
		for _, l := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "cmdstat_"), ":")
			if !ok || !strings.HasPrefix(rest, "calls=") {
				continue
			}
			c, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
			n, _ := strconv.ParseInt(c, 10, 64)
			_, u, _ := strings.Cut(rest, "usec=")
			u, _, _ = strings.Cut(u, ",")
			us, _ := strconv.ParseInt(u, 10, 64)
			calls[name] = [2]int64{n, us}
			if name == "evalsha" {
				usec = us
			}
		}
		return calls, usec
	}
	c0, u0 := stats()
	var synced time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := 0; j < batch; j++ {
			card := rand.IntN(20000)
			_, err := v.Observe(ctx, features.Observation{
				Merchant: fmt.Sprintf("mer_%d", rand.IntN(50)), Fingerprint: fmt.Sprintf("fp_%d", card), IP: fmt.Sprintf("192.0.2.%d", rand.IntN(250)),
				EmailHash: fmt.Sprintf("em_%d", card%8000), Device: fmt.Sprintf("dev_%d", card%5000), Amount: int64(100 + rand.IntN(200000)), Now: now,
			}, true)
			require.NoError(b, err)
		}
		b.StartTimer()
		t0 := time.Now()
		require.NoError(b, v.Sync(ctx))
		synced += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(synced.Microseconds())/float64(b.N*batch), "sync_µs/payment")
	c1, u1 := stats()
	b.ReportMetric(float64(u1-u0)/float64(b.N*batch), "redis_script_µs/payment")
	// Redis commands per payment (the shared Redis: other tests' commands
	// count too when run together), those inside scripts included
	var total int64
	for name, n := range c1 {
		if name == "info" || name == "evalsha" {
			continue
		}
		total += n[0] - c0[name][0]
		if d := n[0] - c0[name][0]; d > 0 {
			b.Logf("%s: %.2f per payment, %.2f µs each", name, float64(d)/float64(b.N*batch), float64(n[1]-c0[name][1])/float64(d))
		}
	}
	b.ReportMetric(float64(total)/float64(b.N*batch), "redis_calls/payment")
}
