package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/obolpay/obol/vault/cvcstore/redisstore"
)

// TestClusterFailoverUseOnce: takers race for every CVC while a primary is
// SIGKILLed and its replica promoted. A Take during the outage fails with
// the network error (never ErrNotFound for a CVC that is there, never a
// value); after the promotion they succeed again; no CVC is ever returned
// twice, and a CVC is found missing only after a Take of it failed (its
// GETDEL may have run before the kill) — nothing vanishes silently.
func TestClusterFailoverUseOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Redis Cluster and kills a primary")
	}
	c := testenv.StartRedisCluster(t)
	ctx := context.Background()
	s, err := redisstore.Open(ctx, c.URL())
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	const n = 600
	token := func(i int) string { return fmt.Sprintf("tok_%04d", i) }
	for i := range n {
		require.NoError(t, s.Put(ctx, token(i), []byte(token(i)), time.Hour))
	}
	// The Puts are on the replicas before the kill: a Put on a cluster
	// returns only once the key's replica acknowledged it
	// (TestClusterPutNotReplicated).
	victim := c.PrimaryFor(t, "obol:cvc:"+token(0))

	var (
		mu       sync.Mutex
		returned = make([]int, n)  // times each CVC was returned
		failed   = make([]bool, n) // a Take of it failed (not ErrNotFound)
		errs     atomic.Int64
		next     atomic.Int64
	)
	killed := make(chan struct{})
	take := func(i int) error {
		v, err := s.Take(ctx, token(i))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			require.Equal(t, token(i), string(v))
			returned[i]++
		case errors.Is(err, cvcstore.ErrNotFound):
		default:
			failed[i] = true
			errs.Add(1)
		}
		return err
	}
	var wg sync.WaitGroup
	// Half the CVCs go before the kill, the rest during and after it;
	// a failed Take is retried (as the client retries its request) until
	// it answers, then a second Take must find nothing.
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if i == n/2 {
					close(killed)
				}
				if i > n/2 {
					<-killed
				}
				for {
					err := take(i)
					if err == nil || errors.Is(err, cvcstore.ErrNotFound) {
						break
					}
					<-time.After(20 * time.Millisecond) // the client's retry backoff
				}
				_ = take(i)
			}
		})
	}
	<-killed
	c.Kill(t, victim)
	start := time.Now()
	promoted := c.WaitPromoted(t)
	t.Logf("failover: %s killed, primaries now %v, after %s", victim, promoted, time.Since(start).Round(time.Millisecond))
	wg.Wait()
	var lost, twice int
	for i := range n {
		if returned[i] > 1 {
			twice++
		}
		if returned[i] == 0 {
			lost++
			assert.True(t, failed[i], "CVC %d vanished without a failed Take", i)
		}
	}
	t.Logf("%d CVCs: %d Take errors during the outage, %d lost after a failed Take, %d returned twice", n, errs.Load(), lost, twice)
	assert.Zero(t, twice, "CVCs returned twice")
	assert.Positive(t, errs.Load(), "no Take ran during the outage")
	// After the promotion everything works again, on every slot.
	require.NoError(t, s.Put(ctx, "after", []byte("v"), time.Hour))
	v, err := s.Take(ctx, "after")
	require.NoError(t, err)
	assert.Equal(t, "v", string(v))
}

// TestClusterTakeNotReplicated: the key's replica is connected but does
// not answer (SIGSTOP), so the deletion cannot be acknowledged: Take fails
// with ErrNotReplicated instead of returning a CVC a failover could hand
// out again, and the CVC is gone (discarded, never returned).
func TestClusterTakeNotReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Redis Cluster and pauses a replica")
	}
	c := testenv.StartRedisCluster(t)
	ctx := context.Background()
	s, err := redisstore.Open(ctx, c.URL())
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Put(ctx, "tok_paused", []byte("sealed"), time.Hour))
	primary := c.PrimaryFor(t, "obol:cvc:tok_paused")
	replica := c.ReplicaOf(t, primary)
	c.Pause(t, replica)
	_, err = s.Take(ctx, "tok_paused")
	require.ErrorIs(t, err, redisstore.ErrNotReplicated)
	c.Resume(t, replica)
	_, err = s.Take(ctx, "tok_paused")
	require.ErrorIs(t, err, cvcstore.ErrNotFound, "the CVC was discarded")
	// With the replica answering again, Takes work.
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if err := s.Put(ctx, "tok_paused", []byte("again"), time.Hour); err != nil {
			return err
		}
		v, err := s.Take(ctx, "tok_paused")
		if err == nil && string(v) != "again" {
			return fmt.Errorf("took %q", v)
		}
		return err
	}))
}

// TestClusterPutNotReplicated: a Put whose primary has a replica connected
// that does not acknowledge (paused) fails with ErrPutNotReplicated, so a
// failover cannot lose a CVC the store acknowledged; once the replica
// answers again, Puts succeed and the CVC is on the replica.
func TestClusterPutNotReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts a Redis Cluster and pauses a replica")
	}
	c := testenv.StartRedisCluster(t)
	ctx := context.Background()
	s, err := redisstore.Open(ctx, c.URL())
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	const key = "obol:cvc:tok_put"
	primary := c.PrimaryFor(t, key)
	replica := c.ReplicaOf(t, primary)
	c.Pause(t, replica)
	err = s.Put(ctx, "tok_put", []byte("sealed"), time.Hour)
	require.ErrorIs(t, err, redisstore.ErrPutNotReplicated)
	require.ErrorIs(t, err, redisconn.ErrNotReplicated)
	c.Resume(t, replica)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		return s.Put(ctx, "tok_put", []byte("again"), time.Hour)
	}))
	r := redis.NewClient(&redis.Options{Addr: replica})
	defer r.Close()
	conn := r.Conn()
	defer conn.Close()
	require.NoError(t, conn.ReadOnly(ctx).Err())
	v, err := conn.Get(ctx, key).Result()
	require.NoError(t, err, "the acknowledged CVC is on the replica")
	assert.Equal(t, "again", v)
}
