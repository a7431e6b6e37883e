package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

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
