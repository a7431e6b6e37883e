package batch

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// flushLog records each batch and the (fake) time it was flushed.
type flushLog struct {
	mu    sync.Mutex
	sizes [][]int
	at    []time.Duration
}

// TestLinger: a lone caller is flushed at once; once callers are concurrent
// (the previous batch had several items), late arrivals within the linger
// of each other join the batch, up to 4 × linger in all.
func TestLinger(t *testing.T) {
	const linger = time.Millisecond
	cases := []struct {
		name    string
		arrive  []time.Duration // when each item arrives, from the start of the loaded phase
		batches [][]int
		at      []time.Duration // flush times, from the start of the loaded phase
	}{
		{"arrivals within the linger join; a later one waits for the next batch",
			[]time.Duration{0, linger / 2, linger, 26 * linger / 10},
			[][]int{{0, 1, 2}, {3}}, []time.Duration{2 * linger, 36 * linger / 10}},
		{"a steady stream is cut at 4 x linger",
			[]time.Duration{0, 6 * linger / 10, 12 * linger / 10, 18 * linger / 10, 24 * linger / 10, 30 * linger / 10, 36 * linger / 10, 42 * linger / 10},
			[][]int{{0, 1, 2, 3, 4, 5, 6}, {7}}, []time.Duration{4 * linger, 52 * linger / 10}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				gate := make(chan struct{})
				var log flushLog
				b := NewLinger(func(_ context.Context, items []int) []error {
					if items[0] == -1 {
						<-gate // hold the first batch so that the next one has two items
					}
					log.mu.Lock()
					log.sizes = append(log.sizes, append([]int(nil), items...))
					log.at = append(log.at, time.Since(start))
					log.mu.Unlock()
					return make([]error, len(items))
				}, 64, 1, linger)
				defer b.Close()

				// A lone caller: flushed at once, no linger.
				require.NoError(t, b.Do(context.Background(), -2))
				require.Equal(t, time.Duration(0), time.Since(start), "a lone caller waited")

				// Make the writer "loaded": a held batch, two items queued behind it.
				var wg sync.WaitGroup
				for _, v := range []int{-1, -3, -4} {
					wg.Go(func() { _ = b.Do(context.Background(), v) })
					synctest.Wait()
				}
				close(gate)
				wg.Wait()
				require.Equal(t, [][]int{{-2}, {-1}, {-3, -4}}, log.sizes, "no linger before the writer is loaded")
				require.Equal(t, []time.Duration{0, 0, 0}, log.at)

				log.mu.Lock()
				log.sizes, log.at = nil, nil
				log.mu.Unlock()
				start = time.Now()
				for i, d := range c.arrive {
					wg.Go(func() {
						time.Sleep(d) // fake time: when this caller arrives
						_ = b.Do(context.Background(), i)
					})
				}
				wg.Wait()
				require.Equal(t, c.batches, log.sizes)
				require.Equal(t, c.at, log.at)
			})
		})
	}
}
