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
// with the time it was due however late it is taken, and counts the ones
// that find a full queue as missed (only while measuring).
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
				// 99.9 ms: the arrivals due at 0, 1, …, 99 ms, no later one
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
				for i, d := range got {
					assert.Equal(t, time.Duration(i)*time.Millisecond, d, "arrival %d", i)
				}
				assert.Equal(t, tc.wantMiss, missed.Load())
			})
		})
	}
}
