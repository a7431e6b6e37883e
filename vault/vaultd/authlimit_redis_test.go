package vaultd_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// TestAuthLimitRedisOfItsOwn: with OBOL_AUTHLIMIT_REDIS_URL the
// failed-authentication counters go to that Redis, not to the CVC Redis
// (here: another database of the same server, which the CVC store never
// writes).
func TestAuthLimitRedisOfItsOwn(t *testing.T) {
	s := newStack(t, stackOpts{})
	opt, err := redis.ParseURL(s.redis.URL)
	require.NoError(t, err)
	opt.DB = 7
	limits := redis.NewClient(opt)
	t.Cleanup(func() { limits.Close() })
	ctx := context.Background()
	keys := func() []string {
		k, err := limits.Keys(ctx, "obol:vault:authfail:*").Result()
		require.NoError(t, err)
		return k
	}
	require.Empty(t, keys(), "database 7 starts without counters")
	s.cfg.AuthLimitRedisURL = strings.TrimSuffix(s.redis.URL, "/0") + "/7"
	s.start()
	req, err := http.NewRequest(http.MethodPost, s.base+"/v1/tokens", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_not-a-key-of-anyone")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if len(keys()) == 0 {
			return errors.New("no counter in database 7 yet")
		}
		return nil
	}), "the failed attempt is counted in the auth-limit Redis")
	t.Cleanup(func() { limits.Del(ctx, keys()...) })
}
