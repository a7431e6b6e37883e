package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/cvcstore/cvcstoretest"
	"github.com/obolpay/obol/vault/cvcstore/redisstore"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	r := testenv.SharedRedis(t)
	rdb := r.Client(t)
	cvcstoretest.Run(t, func(t *testing.T) cvcstoretest.Backend {
		var b [6]byte
		_, _ = rand.Read(b[:])
		prefix := "obol:test:" + hex.EncodeToString(b[:]) + ":"
		s := redisstore.New(rdb, prefix)
		return cvcstoretest.Backend{Store: s, Expire: func(t *testing.T, token string) {
			// Shorten the TTL on the real server and wait until Redis expires it.
			require.NoError(t, rdb.PExpire(context.Background(), prefix+token, time.Millisecond).Err())
			require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
				if n, _ := rdb.Exists(context.Background(), prefix+token).Result(); n != 0 {
					return errors.New("key still present")
				}
				return nil
			}))
		}}
	})
}

func TestOpenUnreachable(t *testing.T) {
	port := testenv.FreePort(t)
	_, err := redisstore.Open(context.Background(), "redis://127.0.0.1:"+itoa(port)+"/0")
	require.Error(t, err, "Open of a closed port succeeded")
}

func itoa(n int) string { return strconv.Itoa(n) }

// The conformance suite on a real Redis Cluster (3 primaries, a replica
// each): the store spreads CVCs over the slots, and Take's GETDEL+WAIT
// runs on each key's primary.
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs a Redis Cluster")
	}
	c := testenv.SharedRedisCluster(t)
	s, err := redisstore.Open(context.Background(), c.URL())
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	rdb := s.Client()
	require.IsType(t, &redis.ClusterClient{}, rdb)
	cvcstoretest.Run(t, func(t *testing.T) cvcstoretest.Backend {
		var b [6]byte
		_, _ = rand.Read(b[:])
		prefix := "obol:test:" + hex.EncodeToString(b[:]) + ":"
		s := redisstore.New(rdb, prefix)
		return cvcstoretest.Backend{Store: s, Expire: func(t *testing.T, token string) {
			require.NoError(t, rdb.PExpire(context.Background(), prefix+token, time.Millisecond).Err())
			require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
				if n, _ := rdb.Exists(context.Background(), prefix+token).Result(); n != 0 {
					return errors.New("key still present")
				}
				return nil
			}))
		}}
	})
	// The keys went to every primary, and batched Puts (one pipeline
	// over several slots) all landed.
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.Put(context.Background(), "spread_"+itoa(i), []byte("v"), time.Hour) }()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	perPrimary := map[string]int{}
	for i := range n {
		perPrimary[c.PrimaryFor(t, "obol:cvc:spread_"+itoa(i))]++
	}
	require.Len(t, perPrimary, 3, "CVC keys spread over the primaries")
	for i := range n {
		v, err := s.Take(context.Background(), "spread_"+itoa(i))
		require.NoError(t, err)
		require.Equal(t, "v", string(v))
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := redisstore.Open(context.Background(), "redis+cluster://:s3cret@127.0.0.1:1/4")
	require.ErrorContains(t, err, "OBOL_CVC_REDIS_URL")
	require.NotContains(t, err.Error(), "s3cret")
}
