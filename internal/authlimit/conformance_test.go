package authlimit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backend is one Counter under test and how to let a window end: the fake
// clock moves for the in-process counter; for Redis the test polls the real
// server until the key expired.
type backend struct {
	c      authlimit.Counter
	window time.Duration
	expire func(t *testing.T, key string)
}

// runConformance is the one suite every Counter passes.
func runConformance(t *testing.T, newBackend func(t *testing.T) backend) {
	ctx := context.Background()
	t.Run("unknown key is zero", func(t *testing.T) {
		b := newBackend(t)
		n, ttl, err := b.c.Get(ctx, "{a:192.0.2.1}")
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.Zero(t, ttl)
	})
	t.Run("add counts within one window", func(t *testing.T) {
		b := newBackend(t)
		for i := int64(1); i <= 3; i++ {
			n, ttl, err := b.c.Add(ctx, "{a:192.0.2.2}", b.window)
			require.NoError(t, err)
			assert.Equal(t, i, n)
			assert.Positive(t, ttl)
			assert.LessOrEqual(t, ttl, b.window)
		}
		n, ttl, err := b.c.Get(ctx, "{a:192.0.2.2}")
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)
		assert.Positive(t, ttl)
	})
	t.Run("keys are independent", func(t *testing.T) {
		b := newBackend(t)
		_, _, err := b.c.Add(ctx, "{a:192.0.2.3}", b.window)
		require.NoError(t, err)
		n, _, err := b.c.Get(ctx, "{p:sk_test_abcd}")
		require.NoError(t, err)
		assert.Zero(t, n)
	})
	t.Run("window end restarts the count", func(t *testing.T) {
		b := newBackend(t)
		for range 2 {
			_, _, err := b.c.Add(ctx, "{a:192.0.2.4}", b.window)
			require.NoError(t, err)
		}
		b.expire(t, "{a:192.0.2.4}")
		n, _, err := b.c.Get(ctx, "{a:192.0.2.4}")
		require.NoError(t, err)
		assert.Zero(t, n)
		n, _, err = b.c.Add(ctx, "{a:192.0.2.4}", b.window)
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "a new window starts at one")
	})
	t.Run("concurrent adds are all counted", func(t *testing.T) {
		b := newBackend(t)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				_, _, err := b.c.Add(ctx, "{p:sk_live_zzzz}", b.window)
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		n, _, err := b.c.Get(ctx, "{p:sk_live_zzzz}")
		require.NoError(t, err)
		assert.Equal(t, int64(50), n)
	})
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryConformance(t *testing.T) {
	runConformance(t, func(t *testing.T) backend {
		clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		return backend{c: authlimit.NewMemory(clk.Now), window: time.Minute, expire: func(*testing.T, string) { clk.Advance(time.Minute) }}
	})
}

func TestRedisConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	r := testenv.SharedRedis(t)
	rdb := r.Client(t)
	n := 0
	runConformance(t, func(t *testing.T) backend {
		n++
		prefix := fmt.Sprintf("obol:test:authfail:%d:%d:", time.Now().UnixNano(), n)
		return backend{c: authlimit.NewRedis(rdb, prefix), window: 300 * time.Millisecond, expire: func(t *testing.T, key string) {
			require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
				if rdb.Exists(context.Background(), prefix+key).Val() != 0 {
					return fmt.Errorf("key still there")
				}
				return nil
			}))
		}}
	})
}

// TestRedisKeysExpireAndFitCluster: every key the limiter writes has an
// expiry and carries one hash tag, so each command stays in one slot.
func TestRedisKeysExpireAndFitCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	rdb := testenv.SharedRedis(t).Client(t)
	prefix := fmt.Sprintf("obol:test:authfail:%d:", time.Now().UnixNano())
	l := authlimit.New(authlimit.Config{Counter: authlimit.NewRedis(rdb, prefix), Name: "t"})
	l.Failed(context.Background(), "http", "198.51.100.7", "sk_test_abcd")
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{prefix + "{a:198.51.100.7}", prefix + "{p:sk_test_abcd}"}, keys)
	for _, k := range keys {
		ttl, err := rdb.PTTL(context.Background(), k).Result()
		require.NoError(t, err)
		assert.Positive(t, ttl, k)
		assert.LessOrEqual(t, ttl, authlimit.DefaultWindow, k)
	}
}

// The suite on a real Redis Cluster; each counter is one key (its own
// slot by its hash tag), so the script and the GET+PTTL pipeline stay in
// one slot, and the counters spread over the primaries.
func TestRedisClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a Redis Cluster")
	}
	c := testenv.SharedRedisCluster(t)
	rdb, err := redisconn.Open(context.Background(), c.URL(), redisconn.Options{Var: "OBOL_REDIS_URL"})
	require.NoError(t, err)
	t.Cleanup(func() { rdb.Close() })
	n := 0
	runConformance(t, func(t *testing.T) backend {
		n++
		prefix := fmt.Sprintf("obol:test:authfail:%d:%d:", time.Now().UnixNano(), n)
		return backend{c: authlimit.NewRedis(rdb, prefix), window: 300 * time.Millisecond, expire: func(t *testing.T, key string) {
			require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
				if rdb.Exists(context.Background(), prefix+key).Val() != 0 {
					return fmt.Errorf("key still there")
				}
				return nil
			}))
		}}
	})
	prefix := fmt.Sprintf("obol:test:authfail:%d:", time.Now().UnixNano())
	ctr := authlimit.NewRedis(rdb, prefix)
	owners := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("{a:192.0.2.%d}", i)
		got, _, err := ctr.Add(context.Background(), key, time.Minute)
		require.NoError(t, err)
		require.Equal(t, int64(1), got)
		owners[c.PrimaryFor(t, prefix+key)] = true
	}
	assert.Len(t, owners, 3, "counters spread over the primaries")
}
