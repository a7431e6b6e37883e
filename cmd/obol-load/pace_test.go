package main

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPace: the open loop queues its arrivals evenly spaced, each stamped
// with the tick that queued it (the first 200 µs tick at or after the time
// it was due; the first tick is 200 µs after the start) however late a
// client takes it, and counts the ones that
// find a full queue as missed (only while measuring).
func TestPace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate, buf int
		measuring bool
		wantSent  int
		wantMiss  int64
	}{
		{"every arrival queued", 1000, 1000, true, 100, 0},
		{"a full queue misses the rest", 1000, 40, true, 40, 60},
		{"misses not counted in the warm-up", 1000, 40, false, 40, 0},
		{"arrivals between ticks stamped with the next tick", 3000, 1000, true, 300, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				due := make(chan time.Time, tc.buf)
				stop := make(chan struct{})
				var missed atomic.Int64
				var measuring atomic.Bool
				measuring.Store(tc.measuring)
				began := time.Now()
				done := make(chan struct{})
				go func() { pace(due, tc.rate, stop, &missed, &measuring); close(done) }()
				// 99.9 ms: the arrivals due before it, no later one
				time.Sleep(99*time.Millisecond + 900*time.Microsecond)
				synctest.Wait()
				close(stop)
				<-done
				close(due)
				var got []time.Duration
				for at := range due {
					got = append(got, at.Sub(began))
				}
				require.Len(t, got, tc.wantSent)
				const tick = 200 * time.Microsecond
				for i, d := range got {
					at := time.Duration(i) * (time.Second / time.Duration(tc.rate))
					assert.Equal(t, max((at+tick-1)/tick*tick, tick), d, "arrival %d", i)
				}
				assert.Equal(t, tc.wantMiss, missed.Load())
			})
		})
	}
}
