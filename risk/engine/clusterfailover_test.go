package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/risk/engine"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/rules"
)

// TestVelocityClusterFailover: two riskd replicas count one card on a real
// Redis Cluster; the primary of their slot is SIGKILLed. During the
// outage a replica's sync fails and its evaluations fall back (riskd's
// documented behaviour: the merchant's fallback action, never counts from
// nowhere); once the replica is promoted the syncs succeed again and the
// card's count is exact: every payment counted before the kill (acknowledged
// by a sync only after the replica had it) and every one after, none lost,
// none twice (the sync in flight at the kill is resent under its batch id).
func TestVelocityClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Redis Cluster and kills a primary")
	}
	c := testenv.StartRedisCluster(t)
	ctx := context.Background()
	rdb, err := redisconn.Open(ctx, c.URL(), redisconn.Options{Var: "OBOL_REDIS_URL", ReadTimeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "obol:replicas:{" + hex.EncodeToString(b[:]) + "}:"
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	st := engine.NewMemoryState(100)
	var rs []replica
	for range 2 {
		v := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now})
		e, err := engine.New(ctx, engine.Config{Features: v, State: st, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		rs = append(rs, replica{e, v})
	}
	a, bb := rs[0], rs[1]
	counted := 0
	evaluate := func(x replica, pid string) bool {
		d := x.e.Evaluate(ctx, cardPayment("fp_fo", pid), false)
		if !d.GetFallback() {
			counted++
		}
		return d.GetFallback()
	}
	for i := range 3 {
		require.False(t, evaluate(a, "pay_a"+strconv.Itoa(i)), "healthy")
		require.False(t, evaluate(bb, "pay_b"+strconv.Itoa(i)), "healthy")
	}
	require.NoError(t, a.v.Sync(ctx))
	require.NoError(t, bb.v.Sync(ctx))
	// One more on a, not synced yet: it is in flight when the primary dies.
	require.False(t, evaluate(a, "pay_a_inflight"))

	victim := c.PrimaryFor(t, prefix+"vstream")
	c.Kill(t, victim)
	require.Error(t, a.v.Sync(ctx), "a's sync during the outage")
	clk.Add(features.DefaultMaxStale + time.Millisecond)
	d := a.e.Evaluate(ctx, cardPayment("fp_fo", "pay_outage"), false)
	assert.True(t, d.GetFallback(), "a during the outage: %v", d)
	assert.Equal(t, rules.Review, d.GetAction(), "a during the outage: default fallback")
	assert.True(t, evaluate(bb, "pay_outage_b"), "b, last sync older than MaxStale")

	start := time.Now()
	c.WaitPromoted(t)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if err := a.v.Sync(ctx); err != nil {
			return err
		}
		return bb.v.Sync(ctx)
	}), "syncs after the promotion")
	t.Logf("promotion of %s's replica: syncs work again %s after the kill", victim, time.Since(start).Round(time.Millisecond))
	// The in-flight payment and the ones before the kill all survived.
	clk.Add(time.Millisecond)
	require.False(t, evaluate(bb, "pay_after"), "b after the promotion")
	require.NoError(t, bb.v.Sync(ctx))
	require.NoError(t, a.v.Sync(ctx))
	d = a.e.Evaluate(ctx, cardPayment("fp_fo", "pay_last"), false)
	require.False(t, d.GetFallback(), "a after the promotion: %v", d)
	counted++
	assert.EqualValues(t, counted, d.GetInput().GetCard().GetCount_1M(), "card count after the failover: every counted payment exactly once")
	assert.Zero(t, a.v.Stats.Resets.Load()+bb.v.Stats.Resets.Load(), "a replica reset its cache: the promoted replica had lost data")
}
