package authlimit_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/testenv"
)

// pipelineGate is a go-redis hook that records the commands of every read
// pipeline and holds the first one, once Redis answered it, until
// released, so a test can queue callers behind a read in flight.
type pipelineGate struct {
	mu        sync.Mutex
	pipelines [][]string // the commands' names and keys, one slice per pipeline
	entered   chan struct{}
	release   chan struct{}
}

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if cmds[0].Name() != "get" {
			return next(ctx, cmds) // a connection's handshake
		}
		var names []string
		for _, c := range cmds {
			names = append(names, fmt.Sprintln(c.Args()...))
		}
		err := next(ctx, cmds)
		g.mu.Lock()
		g.pipelines = append(g.pipelines, names)
		first := len(g.pipelines) == 1
		g.mu.Unlock()
		if first {
			// Answered, but not yet returned to the caller.
			close(g.entered)
			<-g.release
		}
		return err
	}
}

func (g *pipelineGate) recorded() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.pipelines...)
}

var _ redis.Hook = (*pipelineGate)(nil)

// TestRedisGetSharesPipelines: reads of concurrent callers wait for the
// read in flight and then share one pipeline, which reads each distinct key
// once; every caller gets its own key's count, as of a read sent after it
// called (a failure counted while the first read was in flight is seen).
func TestRedisGetSharesPipelines(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	ctx := context.Background()
	rdb := testenv.SharedRedis(t).Client(t)
	prefix := fmt.Sprintf("obol:test:authfail:share:%d:", time.Now().UnixNano())
	writer := authlimit.NewRedis(rdb, prefix)
	for range 2 {
		_, _, err := writer.Add(ctx, "{a:192.0.2.10}", time.Minute)
		require.NoError(t, err)
	}

	gated := redis.NewClient(rdb.Options())
	t.Cleanup(func() { gated.Close() })
	gate := &pipelineGate{entered: make(chan struct{}), release: make(chan struct{})}
	gated.AddHook(gate)
	c := authlimit.NewRedis(gated, prefix)

	first := make(chan int64, 1)
	go func() {
		n, _, err := c.Get(ctx, "{a:192.0.2.10}")
		assert.NoError(t, err)
		first <- n
	}()
	<-gate.entered // the first read was answered (2) and is held before it returns

	// Counted after the first read was answered: the callers below must see it.
	_, _, err := writer.Add(ctx, "{a:192.0.2.10}", time.Minute)
	require.NoError(t, err)

	type answer struct {
		key string
		n   int64
		ttl time.Duration
	}
	keys := []string{"{a:192.0.2.10}", "{a:192.0.2.11}", "{p:sk_test_share}"}
	answers := make(chan answer, 30)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			k := keys[i%len(keys)]
			n, ttl, err := c.Get(ctx, k)
			assert.NoError(t, err)
			answers <- answer{k, n, ttl}
		})
	}
	// Every caller queued behind the held read before it is released.
	require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
		if q := authlimit.QueuedReads(c); q != 30 {
			return fmt.Errorf("%d callers queued", q)
		}
		return nil
	}))
	close(gate.release)
	wg.Wait()
	close(answers)

	assert.Equal(t, int64(2), <-first, "the first read was answered before the third failure")
	for a := range answers {
		switch a.key {
		case "{a:192.0.2.10}":
			assert.Equal(t, int64(3), a.n, "a read queued after the failure sees it")
			assert.Positive(t, a.ttl)
		default:
			assert.Zero(t, a.n, a.key)
			assert.Zero(t, a.ttl, a.key)
		}
	}
	p := gate.recorded()
	require.Len(t, p, 2, "one pipeline for the first caller, one for the 30 queued behind it")
	assert.Len(t, p[0], 2, "GET and PTTL")
	assert.ElementsMatch(t, []string{
		"get " + prefix + "{a:192.0.2.10}\n", "pttl " + prefix + "{a:192.0.2.10}\n",
		"get " + prefix + "{a:192.0.2.11}\n", "pttl " + prefix + "{a:192.0.2.11}\n",
		"get " + prefix + "{p:sk_test_share}\n", "pttl " + prefix + "{p:sk_test_share}\n",
	}, p[1], "each distinct key read once")

	// Nothing in flight any more: a lone read is a pipeline of its own, at once.
	n, _, err := c.Get(ctx, "{a:192.0.2.10}")
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	assert.Len(t, gate.recorded(), 3)
}

// TestRedisGetQueuedCallerDeadline: a caller queued behind a read that is
// held gives up at its own deadline with an error (the
// limiter then counts on the replica), and the queue recovers once the
// read returns.
func TestRedisGetQueuedCallerDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	rdb := testenv.SharedRedis(t).Client(t)
	prefix := fmt.Sprintf("obol:test:authfail:deadline:%d:", time.Now().UnixNano())
	gated := redis.NewClient(rdb.Options())
	t.Cleanup(func() { gated.Close() })
	gate := &pipelineGate{entered: make(chan struct{}), release: make(chan struct{})}
	gated.AddHook(gate)
	c := authlimit.NewRedis(gated, prefix)

	firstDone := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), "{a:192.0.2.20}")
		firstDone <- err
	}()
	<-gate.entered
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctx, "{a:192.0.2.20}")
		queued <- err
	}()
	require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
		if q := authlimit.QueuedReads(c); q != 1 {
			return fmt.Errorf("%d callers queued", q)
		}
		return nil
	}))
	cancel()
	err := <-queued
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "auth failure counter")

	close(gate.release)
	require.NoError(t, <-firstDone)
	// The abandoned caller's read still runs; later callers are served.
	require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
		if len(gate.recorded()) != 2 {
			return fmt.Errorf("the queued read has not run")
		}
		return nil
	}))
	_, _, err = c.Get(context.Background(), "{a:192.0.2.20}")
	require.NoError(t, err)
}

// TestRedisGetUnreachable: every caller of a shared read gets the
// pipeline's error.
func TestRedisGetUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	c := authlimit.NewRedis(rdb, "obol:test:")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, _, err := c.Get(context.Background(), "{a:192.0.2.30}")
			assert.ErrorContains(t, err, "auth failure counter")
		})
	}
	wg.Wait()
}
