package features_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/features/featurestest"
)

func uniqPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "obol:risktest:" + hex.EncodeToString(b[:]) + ":"
}

// alternating spreads observations over two replicas sharing one Redis,
// each syncing before and after it answers: the shared totals the script
// keeps must give what one store gives.
type alternating struct {
	rs [2]*features.Aggregated
	n  int
}

func (a *alternating) Observe(ctx context.Context, o features.Observation, record bool) (features.Result, error) {
	r := a.rs[a.n%2]
	a.n++
	if err := r.Sync(ctx); err != nil {
		return features.Result{}, err
	}
	res, err := r.Observe(ctx, o, record)
	if err != nil {
		return res, err
	}
	return res, r.Sync(ctx)
}

func (a *alternating) Ping(ctx context.Context) error { return a.rs[0].Ping(ctx) }

func TestAggregatedAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	rdb := testenv.SharedRedis(t).Client(t)
	featurestest.Run(t, func(*testing.T) features.Store {
		p := uniqPrefix()
		return &alternating{rs: [2]*features.Aggregated{
			features.NewAggregated(rdb, p, features.AggregatedOptions{}),
			features.NewAggregated(rdb, p, features.AggregatedOptions{}),
		}}
	})
}

// clock is a settable clock for the stores' staleness.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestAggregatedLocalPath: once a replica has synced, observations of keys
// it holds or knows to be absent make no round trip to Redis; a sync older
// than MaxStale makes the next observation sync first.
func TestAggregatedLocalPath(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	rdb := testenv.SharedRedis(t).Client(t)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	prefix := uniqPrefix()
	s := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now})
	o := features.Observation{Merchant: "mer_a", Fingerprint: "fp_1", IP: "192.0.2.1", Device: "dev_1", Amount: 100, Now: clk.Now()}
	_, err := s.Observe(ctx, o, true)
	require.NoError(t, err)
	syncs := s.Stats.Syncs.Load()
	for i := 0; i < 10; i++ {
		clk.Add(features.DefaultMaxStale / 20)
		r, err := s.Observe(ctx, o, true)
		require.NoError(t, err, "observation %d", i)
		assert.EqualValues(t, i+2, r.Card.Count_1M, "observation %d", i)
	}
	assert.Equal(t, syncs, s.Stats.Syncs.Load(), "observations within MaxStale went to Redis")
	// Keys that exist nowhere (a card, IP and device never seen) are
	// known to be absent: no round trip either.
	fresh := features.Observation{Merchant: "mer_a", Fingerprint: "fp_new", IP: "192.0.2.99", Device: "dev_new", EmailHash: "em_new", Amount: 100, Now: clk.Now()}
	r, err := s.Observe(ctx, fresh, true)
	require.NoError(t, err)
	assert.EqualValues(t, 1, r.Card.Count_1M, "a new card")
	assert.EqualValues(t, 12, r.Merchant.Count_1M, "the merchant")
	assert.Equal(t, syncs, s.Stats.Syncs.Load(), "an observation of new keys went to Redis")
	// Another replica started later finds them in Redis.
	later := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now})
	require.NoError(t, s.Sync(ctx))
	r, err = later.Observe(ctx, fresh, false)
	require.NoError(t, err)
	assert.EqualValues(t, 1, r.Card.Count_1M, "a replica started later: the card")
	assert.EqualValues(t, 12, r.Merchant.Count_1M, "a replica started later: the merchant")
	assert.EqualValues(t, 1, r.IP.DistinctCards_1H, "a replica started later: distinct cards of the ip")
	syncs = s.Stats.Syncs.Load()
	clk.Add(features.DefaultMaxStale + time.Millisecond)
	_, err = s.Observe(ctx, o, false)
	require.NoError(t, err)
	assert.Equal(t, syncs+1, s.Stats.Syncs.Load(), "an observation after MaxStale did not sync first")
}

// Two replicas sharing counters on a real Redis Cluster (one slot, by the
// prefix's hash tag); the scan at the first sync finds keys another
// replica wrote, on the slot's primary.
func TestAggregatedAcrossReplicasCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a Redis Cluster")
	}
	rdb := testenv.SharedRedisCluster(t).Client(t)
	featurestest.Run(t, func(*testing.T) features.Store {
		p := "{" + uniqPrefix() + "}:"
		return &alternating{rs: [2]*features.Aggregated{
			features.NewAggregated(rdb, p, features.AggregatedOptions{}),
			features.NewAggregated(rdb, p, features.AggregatedOptions{}),
		}}
	})
	ctx := context.Background()
	p := "{" + uniqPrefix() + "}:"
	a := features.NewAggregated(rdb, p, features.AggregatedOptions{})
	o := features.Observation{Merchant: "mer_a", Fingerprint: "fp_1", IP: "192.0.2.1", Device: "dev_1", Amount: 100, Now: time.Now()}
	for range 3 {
		_, err := a.Observe(ctx, o, true)
		require.NoError(t, err)
	}
	require.NoError(t, a.Sync(ctx))
	b := features.NewAggregated(rdb, p, features.AggregatedOptions{})
	require.NoError(t, b.Sync(ctx))
	r, err := b.Observe(ctx, o, false)
	require.NoError(t, err)
	assert.EqualValues(t, 3, r.Card.Count_1M, "a replica started later sees the counts")
}
