package batch

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResultsReachTheirCallers(t *testing.T) {
	var calls, maxSeen atomic.Int64
	release := make(chan struct{})
	b := New(func(_ context.Context, items []int) []error {
		if calls.Add(1) == 1 {
			<-release // hold the first flush so the rest queue up
		}
		if n := int64(len(items)); n > maxSeen.Load() {
			maxSeen.Store(n)
		}
		errs := make([]error, len(items))
		for i, v := range items {
			if v%3 == 0 {
				errs[i] = errors.New("multiple of three")
			}
		}
		return errs
	}, 8, 1)
	defer b.Close()
	const n = 40
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); results[i] = b.Do(context.Background(), i) }(i)
	}
	// Wait until the flusher holds the first batch and others are queued.
	for len(b.in) == 0 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	for i, err := range results {
		if i%3 == 0 {
			assert.Error(t, err, "item %d", i)
		} else {
			assert.NoError(t, err, "item %d", i)
		}
	}
	assert.Less(t, calls.Load(), int64(n), "flushes for %d concurrent items: nothing was batched", n)
	assert.LessOrEqual(t, maxSeen.Load(), int64(8), "batch exceeds max 8")
}

func TestClosed(t *testing.T) {
	b := New(func(_ context.Context, items []int) []error { return make([]error, len(items)) }, 4, 2)
	require.NoError(t, b.Do(context.Background(), 1))
	b.Close()
	b.Close()
	require.ErrorIs(t, b.Do(context.Background(), 1), ErrClosed, "Do after Close")
}

func TestCallerContext(t *testing.T) {
	block := make(chan struct{})
	b := New(func(_ context.Context, items []int) []error { <-block; return make([]error, len(items)) }, 1, 1)
	defer b.Close()
	defer close(block)
	go func() { _ = b.Do(context.Background(), 0) }() // occupies the only flusher
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.Do(ctx, 1), context.Canceled, "Do with a cancelled context")
}
