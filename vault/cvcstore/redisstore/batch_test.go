package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/cvcstore/redisstore"
)

// setGate is a go-redis hook that counts the round trips that carry SETs
// (a lone command or a pipeline) and holds the first one, once Redis
// answered it, until released.
type setGate struct {
	mu      sync.Mutex
	trips   []int // SETs per round trip
	entered chan struct{}
	release chan struct{}
}

func (g *setGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *setGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "set" {
			g.trip(1)
		}
		return err
	}
}

func (g *setGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		n := 0
		for _, c := range cmds {
			if c.Name() == "set" {
				n++
			}
		}
		if n > 0 {
			g.trip(n)
		}
		return err
	}
}

func (g *setGate) trip(sets int) {
	g.mu.Lock()
	g.trips = append(g.trips, sets)
	first := len(g.trips) == 1
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
}

func (g *setGate) recorded() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.trips...)
}

// TestPutsSharePipelines: on a single node, Puts that arrive while one is
// in flight wait for it and then share one pipeline; each is stored with
// its own value and TTL, and each caller is answered only once its SET was.
func TestPutsSharePipelines(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	base := testenv.SharedRedis(t).Client(t)
	rdb := redis.NewClient(base.Options())
	t.Cleanup(func() { rdb.Close() })
	gate := &setGate{entered: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(gate)
	prefix := fmt.Sprintf("obol:test:share:%d:", time.Now().UnixNano())
	s := redisstore.New(rdb, prefix)
	t.Cleanup(func() { s.Close() })

	firstDone := make(chan error, 1)
	go func() { firstDone <- s.Put(ctx, "tok_first", []byte("v-first"), time.Minute) }()
	<-gate.entered // stored, its answer held

	const n = 20
	var wg sync.WaitGroup
	var answered sync.Map
	for i := range n {
		wg.Go(func() {
			tok := "tok_" + strconv.Itoa(i)
			err := s.Put(ctx, tok, []byte("v-"+tok), time.Duration(i+1)*time.Minute)
			assert.NoError(t, err)
			answered.Store(tok, true)
		})
	}
	// The 20 Puts queue behind the held one: none is stored or answered.
	require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
		if q := redisstore.QueuedPuts(s); q != n {
			return fmt.Errorf("%d Puts queued", q)
		}
		return nil
	}))
	keys, err := base.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{prefix + "tok_first"}, keys, "nothing else is stored while the first Put is held")
	answered.Range(func(k, _ any) bool { t.Errorf("%v answered before it was stored", k); return true })

	close(gate.release)
	require.NoError(t, <-firstDone)
	wg.Wait()
	assert.Equal(t, []int{1, n}, gate.recorded(), "one round trip for the first Put, one for the 20 queued behind it")
	for i := range n {
		tok := "tok_" + strconv.Itoa(i)
		v, err := base.Get(ctx, prefix+tok).Result()
		require.NoError(t, err)
		assert.Equal(t, "v-"+tok, v)
		ttl, err := base.PTTL(ctx, prefix+tok).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, time.Duration(i)*time.Minute, tok)
		assert.LessOrEqual(t, ttl, time.Duration(i+1)*time.Minute, tok)
	}
}
