package authlimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared Counter: one key per counter (INCR, and PEXPIRE when
// the INCR created it, in one script so a crash cannot leave a key without
// expiry). Keys are prefix + "{a:<address>}" or prefix + "{p:<key prefix>}":
// the braces make each key its own Redis Cluster hash slot.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ Counter = (*Redis)(nil)

// NewRedis returns a counter on rdb whose keys start with prefix (e.g.
// "obol:gateway:authfail:").
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix}
}

var addScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {n, redis.call('PTTL', KEYS[1])}
`)

// Get implements Counter.
func (r *Redis) Get(ctx context.Context, key string) (int64, time.Duration, error) {
	k := r.prefix + key
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, k)
		ttl = p.PTTL(ctx, k)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("auth failure counter: %w", err)
	}
	n, err := get.Int64()
	if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("auth failure counter: %w", err)
	}
	d := ttl.Val()
	if d < 0 {
		d = 0
	}
	return n, d, nil
}

// Add implements Counter.
func (r *Redis) Add(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	res, err := addScript.Run(ctx, r.rdb, []string{r.prefix + key}, window.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("auth failure counter: %w", err)
	}
	if len(res) != 2 {
		return 0, 0, errors.New("auth failure counter: unexpected script answer")
	}
	return res[0], time.Duration(max(res[1], 0)) * time.Millisecond, nil
}
