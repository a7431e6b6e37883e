package features_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
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

// TestAggregatedSyncMinutes: one sync carries payments of several minutes
// (the script names each minute's buckets once and a key comes once per
// minute): the shared totals are what the payments add up to, and a key's
// new bucket drops the one before its previous in Redis.
func TestAggregatedSyncMinutes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	rdb := testenv.SharedRedis(t).Client(t)
	base := time.Unix(1_800_000_000/3600*3600+600, 0) // minute 10 of an hour
	tests := []struct {
		name    string
		minutes []int64 // one payment of the card per entry, at that minute's second 30
		// the shared 60 s buckets left in Redis (minute: count)
		buckets map[int64]int64
		hour    int64
	}{
		{"one minute", []int64{0, 0, 0}, map[int64]int64{0: 3}, 3},
		{"two minutes in one sync", []int64{0, 1, 1}, map[int64]int64{0: 1, 1: 2}, 3},
		{"a third minute drops the first", []int64{0, 1, 2, 2}, map[int64]int64{1: 1, 2: 2}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{t: base}
			prefix := uniqPrefix()
			a := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now})
			require.NoError(t, a.Sync(ctx))
			for _, m := range tt.minutes {
				at := base.Add(time.Duration(m)*time.Minute + 30*time.Second)
				_, err := a.Observe(ctx, features.Observation{Merchant: "mer_m", Fingerprint: "fp_m", Amount: 100, Now: at}, true)
				require.NoError(t, err)
			}
			require.NoError(t, a.Sync(ctx))
			h, err := rdb.HGetAll(ctx, prefix+"v:card:fp_m").Result()
			require.NoError(t, err)
			m0 := base.Unix() / 60
			got := map[int64]int64{}
			for f, v := range h {
				var b, n int64
				if _, err := fmt.Sscanf(f, "60:%d:c", &b); err == nil {
					_, err = fmt.Sscan(v, &n)
					require.NoError(t, err)
					got[b-m0] = n
				}
			}
			assert.Equal(t, tt.buckets, got, "60 s buckets in Redis")
			assert.Equal(t, strconv.FormatInt(tt.hour, 10), h["3600:"+strconv.FormatInt(base.Unix()/3600, 10)+":c"], "hour bucket")
			assert.Equal(t, strconv.FormatInt(tt.hour*100, 10), h["3600:"+strconv.FormatInt(base.Unix()/3600, 10)+":s"], "hour sum")
			// another replica reads the same totals
			b := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now})
			last := base.Add(time.Duration(tt.minutes[len(tt.minutes)-1])*time.Minute + 30*time.Second)
			ra, err := a.Observe(ctx, features.Observation{Merchant: "mer_m", Fingerprint: "fp_m", Now: last}, false)
			require.NoError(t, err)
			rb, err := b.Observe(ctx, features.Observation{Merchant: "mer_m", Fingerprint: "fp_m", Now: last}, false)
			require.NoError(t, err)
			assert.Equal(t, ra.Card, rb.Card, "the card's velocity on both replicas")
			assert.EqualValues(t, tt.hour, rb.Card.Count_1H, "the card's count in the hour")
		})
	}
}

// TestAggregatedPendingBound: a payment counted here that has not reached
// Redis MaxStale after it was counted (the syncs since carried older ones)
// makes the next evaluation wait for the syncs that send it, however many,
// even though the last sync is recent: another replica has it within
// MaxStale of its own next sync.
func TestAggregatedPendingBound(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	rdb := testenv.SharedRedis(t).Client(t)
	tests := []struct {
		name     string
		payments int
		wait     time.Duration // after the payments, before the last sync
		// syncs the next evaluation runs first
		syncs int64
	}{
		{"within the bound: answered from the view", 2, features.DefaultMaxStale / 2, 0},
		{"beyond the bound: syncs first", 2, features.DefaultMaxStale + time.Millisecond, 1},
		{"far behind: as many syncs as it takes", 9, features.DefaultMaxStale + time.Millisecond, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{t: time.Unix(1_800_000_000, 0)}
			prefix := uniqPrefix()
			a := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now, MaxBatch: 1})
			b := features.NewAggregated(rdb, prefix, features.AggregatedOptions{Now: clk.Now})
			require.NoError(t, a.Sync(ctx))
			o := features.Observation{Merchant: "mer_p", Fingerprint: "fp_p", Amount: 100, Now: clk.Now()}
			for i := 0; i < tt.payments; i++ {
				_, err := a.Observe(ctx, o, true)
				require.NoError(t, err)
			}
			clk.Add(tt.wait)
			require.NoError(t, a.Sync(ctx), "a's sync (one payment)")
			syncs := a.Stats.Syncs.Load()
			r, err := a.Observe(ctx, o, false)
			require.NoError(t, err)
			assert.EqualValues(t, tt.payments, r.Card.Count_1M, "a: card count")
			assert.Equal(t, syncs+tt.syncs, a.Stats.Syncs.Load(), "a's syncs before answering")
			r, err = b.Observe(ctx, o, false)
			require.NoError(t, err)
			assert.EqualValues(t, 1+tt.syncs, r.Card.Count_1M, "b: card count in Redis")
		})
	}
}

// TestAggregatedComputedWrites: a sync writes the new values of a key its
// view holds as Redis does without reading it, and reads and adds to a key
// another replica changed since its last sync, or when Redis lost its data
// (a new epoch): the shared totals stay exact either way.
func TestAggregatedComputedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	rdb := testenv.SharedRedis(t).Client(t)
	at := time.Unix(1_800_000_000, 0)
	o := features.Observation{Merchant: "mer_w", Fingerprint: "fp_w", IP: "192.0.2.7", Device: "dev_w", Amount: 100, Now: at}
	type step struct {
		replica int  // which replica counts one payment and syncs
		wipe    bool // instead: Redis loses every key of the prefix
	}
	tests := []struct {
		name  string
		steps []step
		want  int64 // the card's count in the hour, in Redis
	}{
		{"one replica, several syncs", []step{{replica: 0}, {replica: 0}, {replica: 0}}, 3},
		{"the other replica changed the key between", []step{{replica: 0}, {replica: 1}, {replica: 0}, {replica: 1}, {replica: 0}}, 5},
		{"Redis lost its data", []step{{replica: 0}, {replica: 0}, {wipe: true}, {replica: 0}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := uniqPrefix()
			rs := [2]*features.Aggregated{
				features.NewAggregated(rdb, prefix, features.AggregatedOptions{}),
				features.NewAggregated(rdb, prefix, features.AggregatedOptions{}),
			}
			for _, r := range rs {
				require.NoError(t, r.Sync(ctx))
			}
			for i, st := range tt.steps {
				if st.wipe {
					keys, err := rdb.Keys(ctx, prefix+"*").Result()
					require.NoError(t, err)
					require.NoError(t, rdb.Del(ctx, keys...).Err())
					continue
				}
				r := rs[st.replica]
				_, err := r.Observe(ctx, o, true)
				require.NoError(t, err, "step %d", i)
				require.NoError(t, r.Sync(ctx), "step %d", i)
			}
			got, err := rdb.HGet(ctx, prefix+"v:card:fp_w", "3600:"+strconv.FormatInt(at.Unix()/3600, 10)+":c").Int64()
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "the card's count in Redis")
			for i, r := range rs {
				require.NoError(t, r.Sync(ctx))
				res, err := r.Observe(ctx, o, false)
				require.NoError(t, err)
				assert.Equal(t, tt.want, res.Card.Count_1H, "replica %d: the card's count", i)
				assert.EqualValues(t, 1, res.IP.DistinctCards_1H, "replica %d: distinct cards of the ip", i)
			}
		})
	}
}
