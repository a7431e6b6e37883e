package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/engine"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/rules"
)

// fakeClock is the replicas' clock: the windows and the staleness bound
// follow it, so the test needs no sleeps.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type replica struct {
	e *engine.Engine
	v *features.Aggregated
}

// replicas starts n riskd engines (default rules) sharing one Redis
// keyspace and one rule-set state, each with its own velocity store
// (maxBatch, when given, caps the payments of one sync).
func replicas(t *testing.T, rdb redis.UniversalClient, clk *fakeClock, n int, maxBatch ...int) []replica {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "obol:replicas:" + hex.EncodeToString(b[:]) + ":"
	st := engine.NewMemoryState(100)
	var out []replica
	for i := 0; i < n; i++ {
		opt := features.AggregatedOptions{Now: clk.Now}
		if len(maxBatch) > 0 {
			opt.MaxBatch = maxBatch[0]
		}
		v := features.NewAggregated(rdb, prefix, opt)
		e, err := engine.New(context.Background(), engine.Config{Features: v, State: st, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		out = append(out, replica{e, v})
	}
	return out
}

func cardPayment(fp, pid string) *riskv1.Payment {
	return &riskv1.Payment{MerchantId: "mer_r", Amount: 1000, Currency: "USD", Bin: "424242", Fingerprint: fp, CustomerIp: "192.0.2.10", BillingCountry: "US", PaymentId: pid}
}

func matched(d *riskv1.Decision, rule string) bool {
	for _, r := range d.GetRules() {
		if r.GetName() == rule {
			return true
		}
	}
	return false
}

// TestVelocityAcrossReplicas: two riskd replicas share one Redis; each
// counts locally and syncs every features.DefaultSyncInterval. The
// card-velocity-burst rule (same card more than 3 times a minute) fires on
// either replica once both have synced once after the payments, that is
// within 2 × the sync interval, whichever replica saw them; a replica
// that has not synced for features.DefaultMaxStale syncs before it answers;
// and a replica whose syncs fell behind (a payment counted there has not
// reached Redis for features.DefaultMaxStale) sends it before it answers,
// so the other replica has it within DefaultMaxStale of its own next sync.
func TestVelocityAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	rdb := testenv.SharedRedis(t).Client(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		maxBatch int
		fn       func(t *testing.T, clk *fakeClock, a, b replica)
	}{
		{"a burst split over two replicas fires within two sync intervals", 0, func(t *testing.T, clk *fakeClock, a, b replica) {
			for i, r := range []replica{a, b, a, b} {
				d := r.e.Evaluate(ctx, cardPayment("fp_split", ""), false)
				require.False(t, d.GetFallback(), "payment %d: %v", i, d)
				// each replica alone has seen at most 2: not a burst yet
				assert.Equal(t, rules.Allow, d.GetAction(), "payment %d", i)
			}
			// One interval later both tick: a sends its two, b sends its
			// two and reads a's.
			clk.Add(features.DefaultSyncInterval)
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			require.NoError(t, b.v.Sync(ctx), "b's sync")
			d := b.e.Evaluate(ctx, cardPayment("fp_split", ""), true)
			assert.EqualValues(t, 4, d.GetInput().GetCard().GetCount_1M(), "b after one interval: card count")
			d = a.e.Evaluate(ctx, cardPayment("fp_split", ""), true)
			assert.EqualValues(t, 2, d.GetInput().GetCard().GetCount_1M(), "a after one interval (b's not read yet): card count")
			// At a's next tick, two intervals after the payments, a has b's.
			clk.Add(features.DefaultSyncInterval)
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			d = a.e.Evaluate(ctx, cardPayment("fp_split", ""), true)
			assert.EqualValues(t, 4, d.GetInput().GetCard().GetCount_1M(), "a after two intervals: card count")
			for i, r := range []replica{a, b} {
				d := r.e.Evaluate(ctx, cardPayment("fp_split", ""), false)
				assert.EqualValues(t, 5, d.GetInput().GetCard().GetCount_1M(), "payment %d after the syncs: card count", 5+i)
				assert.Equal(t, rules.Challenge, d.GetAction(), "payment %d after the syncs", 5+i)
				assert.True(t, matched(d, "card-velocity-burst"), "payment %d after the syncs: rules %v", 5+i, d.GetRules())
			}
		}},
		{"a replica that has not synced for MaxStale syncs before answering", 0, func(t *testing.T, clk *fakeClock, a, b replica) {
			b.e.Evaluate(ctx, cardPayment("fp_other", ""), false) // b is warm and synced
			for i := 0; i < 4; i++ {
				a.e.Evaluate(ctx, cardPayment("fp_stuck", ""), false)
			}
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			// b's sync loop is stuck: no tick ran since.
			clk.Add(features.DefaultMaxStale + time.Millisecond)
			syncs := b.v.Stats.Syncs.Load()
			d := b.e.Evaluate(ctx, cardPayment("fp_stuck", ""), false)
			assert.Equal(t, syncs+1, b.v.Stats.Syncs.Load(), "b did not sync before answering")
			assert.EqualValues(t, 5, d.GetInput().GetCard().GetCount_1M(), "b: card count")
			assert.Equal(t, rules.Challenge, d.GetAction(), "b")
		}},
		{"a replica whose syncs fell behind sends its payments before answering", 1, func(t *testing.T, clk *fakeClock, a, b replica) {
			for i := 0; i < 4; i++ {
				a.e.Evaluate(ctx, cardPayment("fp_behind", ""), false)
			}
			// a's syncs carry one payment each (a backlog): after one,
			// three wait; the last sync is recent, its oldest payment not.
			clk.Add(features.DefaultMaxStale + time.Millisecond)
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			syncs := a.v.Stats.Syncs.Load()
			d := a.e.Evaluate(ctx, cardPayment("fp_behind", ""), true)
			assert.Greater(t, a.v.Stats.Syncs.Load(), syncs, "a did not sync before answering")
			assert.EqualValues(t, 4, d.GetInput().GetCard().GetCount_1M(), "a: card count")
			require.NoError(t, b.v.Sync(ctx), "b's sync")
			d = b.e.Evaluate(ctx, cardPayment("fp_behind", ""), false)
			assert.EqualValues(t, 5, d.GetInput().GetCard().GetCount_1M(), "b: card count")
			assert.Equal(t, rules.Challenge, d.GetAction(), "b")
		}},
		{"a payment retried on the other replica counts once", 0, func(t *testing.T, clk *fakeClock, a, b replica) {
			d := a.e.Evaluate(ctx, cardPayment("fp_retry", "pay_retry"), false)
			require.EqualValues(t, 1, d.GetInput().GetCard().GetCount_1M(), "first attempt")
			clk.Add(features.DefaultSyncInterval)
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			require.NoError(t, b.v.Sync(ctx), "b's sync")
			for i := 0; i < 3; i++ {
				d = b.e.Evaluate(ctx, cardPayment("fp_retry", "pay_retry"), false)
				assert.EqualValues(t, 1, d.GetInput().GetCard().GetCount_1M(), "retry %d on b", i)
			}
			require.NoError(t, b.v.Sync(ctx), "b's sync")
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			d = a.e.Evaluate(ctx, cardPayment("fp_retry", ""), true)
			assert.EqualValues(t, 1, d.GetInput().GetCard().GetCount_1M(), "shared count after the retries")
		}},
		{"a payment evaluated on both replicas between syncs counts once in Redis", 0, func(t *testing.T, clk *fakeClock, a, b replica) {
			a.e.Evaluate(ctx, cardPayment("fp_race", "pay_race"), false)
			b.e.Evaluate(ctx, cardPayment("fp_race", "pay_race"), false)
			dups := a.v.Stats.Duplicates.Load() + b.v.Stats.Duplicates.Load()
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			require.NoError(t, b.v.Sync(ctx), "b's sync")
			require.NoError(t, a.v.Sync(ctx), "a's sync")
			assert.Equal(t, dups+1, a.v.Stats.Duplicates.Load()+b.v.Stats.Duplicates.Load(), "duplicates found by the syncs")
			for name, r := range map[string]replica{"a": a, "b": b} {
				d := r.e.Evaluate(ctx, cardPayment("fp_race", ""), true)
				assert.EqualValues(t, 1, d.GetInput().GetCard().GetCount_1M(), "replica %s: card count", name)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
			rs := replicas(t, rdb, clk, 2, tt.maxBatch)
			tt.fn(t, clk, rs[0], rs[1])
		})
	}
}

// TestVelocityOutageFailsClosed: with Redis down, a replica falls back
// from its first failed sync on (at most one sync interval after the
// outage began), and as soon as its last sync is older than MaxStale even
// without a tick; it recovers once Redis answers.
func TestVelocityOutageFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	r := testenv.StartRedis(t)
	opt, err := redis.ParseURL(r.URL)
	require.NoError(t, err)
	opt.MaxRetries = 0
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	rs := replicas(t, rdb, clk, 2)
	a, b := rs[0], rs[1]
	for _, x := range rs {
		require.False(t, x.e.Evaluate(ctx, cardPayment("fp_out", ""), false).GetFallback(), "healthy")
	}
	r.Stop(t)
	require.Error(t, a.v.Sync(ctx), "a's sync during the outage")
	d := a.e.Evaluate(ctx, cardPayment("fp_out", ""), false)
	assert.True(t, d.GetFallback(), "a after a failed sync: %v", d)
	assert.Equal(t, rules.Review, d.GetAction(), "a after a failed sync")
	clk.Add(features.DefaultMaxStale + time.Millisecond)
	d = b.e.Evaluate(ctx, cardPayment("fp_out", ""), false)
	assert.True(t, d.GetFallback(), "b, last sync older than MaxStale: %v", d)
	r.Start(t)
	require.NoError(t, a.v.Sync(ctx), "a's sync after the outage")
	d = a.e.Evaluate(ctx, cardPayment("fp_out", ""), false)
	assert.False(t, d.GetFallback(), "a after the outage: %v", d)
	// Redis came back empty (no persistence): a reloaded its cache and
	// applied the sync that had failed, so its payment from before the
	// outage counts, with this one (b's has not been synced yet).
	assert.EqualValues(t, 2, d.GetInput().GetCard().GetCount_1M(), "a after the outage: card count")
}
