package authlimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared Counter: one key per counter (INCR, and PEXPIRE when
// the INCR created it, in one script so a crash cannot leave a key without
// expiry). Keys are prefix + "{a:<address>}" or prefix + "{p:<key prefix>}":
// the braces make each key its own Redis Cluster hash slot.
//
// Reads of concurrent callers share one pipeline (Get): while one read is
// in flight, the callers that arrive wait for it to end and are then
// answered by the next pipeline, which reads each distinct key once. Every
// caller is answered by a read sent after it called, so no answer is older
// than the call; on a loaded edge, where every successful request reads its
// address's counter, this turns one round trip per request into one per
// round trip's worth of requests (and one per distinct address in it).
type Redis struct {
	rdb    redis.UniversalClient
	prefix string

	mu       sync.Mutex
	inFlight bool      // a read pipeline runs
	next     *getGroup // the callers waiting for the next one
}

// getGroup is one shared read: the distinct keys asked, their answers, and
// done, closed once the answers are in.
type getGroup struct {
	keys     []string
	waiting  int       // callers, a key asked twice included
	deadline time.Time // the first caller's, if its context had one
	res      map[string]getResult
	done     chan struct{}
}

type getResult struct {
	n   int64
	ttl time.Duration
	err error
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

// Get implements Counter. Concurrent calls share pipelines (see Redis).
func (r *Redis) Get(ctx context.Context, key string) (int64, time.Duration, error) {
	r.mu.Lock()
	if !r.inFlight {
		// Nothing in flight: read now, on this goroutine.
		r.inFlight = true
		r.mu.Unlock()
		res := r.readOne(ctx, key)
		r.handOff()
		return res.n, res.ttl, res.err
	}
	g := r.next
	if g == nil {
		g = &getGroup{res: map[string]getResult{}, done: make(chan struct{})}
		if d, ok := ctx.Deadline(); ok {
			g.deadline = d
		}
		r.next = g
	}
	g.waiting++
	if _, seen := g.res[key]; !seen {
		g.res[key] = getResult{}
		g.keys = append(g.keys, key)
	}
	r.mu.Unlock()
	select {
	case <-g.done:
		res := g.res[key]
		return res.n, res.ttl, res.err
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("auth failure counter: %w", ctx.Err())
	}
}

// handOff ends a read: the callers that arrived during it are read for in
// one pipeline, on a goroutine of its own, or nothing is in flight any more.
func (r *Redis) handOff() {
	r.mu.Lock()
	g := r.next
	r.next = nil
	r.inFlight = g != nil
	r.mu.Unlock()
	if g == nil {
		return
	}
	go func() {
		ctx := context.Background()
		if !g.deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, g.deadline)
			defer cancel()
		}
		res := r.read(ctx, g.keys)
		r.mu.Lock()
		g.res = res // nobody reads g.res before done is closed
		r.mu.Unlock()
		close(g.done)
		r.handOff()
	}()
}

// readOne is read for one key, without the map.
func (r *Redis) readOne(ctx context.Context, key string) getResult {
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, r.prefix+key)
		ttl = p.PTTL(ctx, r.prefix+key)
		return nil
	})
	return answer(get, ttl, err)
}

// read sends GET and PTTL for every key in one pipeline (on a cluster,
// go-redis splits it by node).
func (r *Redis) read(ctx context.Context, keys []string) map[string]getResult {
	gets := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			gets[i] = p.Get(ctx, r.prefix+key)
			ttls[i] = p.PTTL(ctx, r.prefix+key)
		}
		return nil
	})
	out := make(map[string]getResult, len(keys))
	for i, key := range keys {
		out[key] = answer(gets[i], ttls[i], err)
	}
	return out
}

// answer is one key's result from its pipeline's commands; perr is the
// pipeline's error. Any error of the pipeline fails every key's read, as
// it failed the one read per request before reads were shared (the
// limiter then counts on the replica for a while).
func answer(get *redis.StringCmd, ttl *redis.DurationCmd, perr error) getResult {
	n, err := get.Int64()
	switch {
	case errors.Is(err, redis.Nil):
		return getResult{}
	case err != nil:
		return getResult{err: fmt.Errorf("auth failure counter: %w", err)}
	case perr != nil && !errors.Is(perr, redis.Nil):
		return getResult{err: fmt.Errorf("auth failure counter: %w", perr)}
	}
	if err := ttl.Err(); err != nil {
		return getResult{err: fmt.Errorf("auth failure counter: %w", err)}
	}
	return getResult{n: n, ttl: max(ttl.Val(), 0)}
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
