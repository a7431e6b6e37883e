package main

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPacerQueue: the open loop queues every arrival due by now, evenly
// spaced, each stamped with the time it was due plus at most graceLate of
// its lateness; a late tick queues the arrivals it missed, their lateness
// counted beyond graceLate; an arrival that finds the queue full is missed
// (counted only while measuring).
func TestPacerQueue(t *testing.T) {
	began := time.Unix(1_700_000_000, 0)
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		rate      int64
		buf       int
		measuring bool
		now       time.Duration // since began
		want      []time.Duration
		wantLate  []time.Duration
		wantMiss  int64
	}{
		{"on time", 1000, 10, true, 0, []time.Duration{0}, []time.Duration{0}, 0},
		{"a tick 2 ms in", 1000, 10, true, 2 * ms, []time.Duration{ms, 2 * ms, 2 * ms}, []time.Duration{2 * ms, ms, 0}, 0},
		{"late within the grace: stamped when queued", 1000, 10, true, 1500 * time.Microsecond,
			[]time.Duration{ms, 1500 * time.Microsecond}, []time.Duration{1500 * time.Microsecond, 500 * time.Microsecond}, 0},
		{"a stalled tick: the lateness beyond the grace counts", 1000, 10, true, 5 * ms,
			[]time.Duration{ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 5 * ms}, []time.Duration{5 * ms, 4 * ms, 3 * ms, 2 * ms, ms, 0}, 0},
		{"uneven spacing without drift", 3000, 10, true, 1 * ms,
			[]time.Duration{ms, ms, ms, ms}, []time.Duration{ms, 666_667, 333_334, 0}, 0},
		{"a full queue misses the rest", 1000, 2, true, 4 * ms, []time.Duration{ms, 2 * ms}, []time.Duration{4 * ms, 3 * ms, 2 * ms, ms, 0}, 3},
		{"misses not counted in the warm-up", 1000, 2, false, 4 * ms, []time.Duration{ms, 2 * ms}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			due := make(chan time.Time, tc.buf)
			var missed atomic.Int64
			var measuring atomic.Bool
			measuring.Store(tc.measuring)
			p := &pacer{due: due, rate: tc.rate, began: began, missed: &missed, measuring: &measuring}
			p.queue(began.Add(tc.now))
			close(due)
			var got []time.Duration
			for at := range due {
				got = append(got, at.Sub(began))
			}
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.wantLate, p.late)
			assert.Equal(t, tc.wantMiss, missed.Load())
			// nothing is queued twice
			next := p.sent
			p.queue(began.Add(tc.now))
			assert.Equal(t, next, p.sent)
		})
	}
}

// TestPacerRun: run queues each arrival at the first 200 µs tick at or
// after it is due and stops when told.
func TestPacerRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		due := make(chan time.Time, 1000)
		stop := make(chan struct{})
		var missed atomic.Int64
		var measuring atomic.Bool
		measuring.Store(true)
		p := &pacer{due: due, rate: 1000, began: time.Now(), missed: &missed, measuring: &measuring}
		done := make(chan struct{})
		go func() { p.run(stop); close(done) }()
		// 9.9 ms: the ticks at 0.2 … 9.8 ms queue the arrivals due at 0 … 9 ms
		time.Sleep(9*time.Millisecond + 900*time.Microsecond)
		synctest.Wait()
		close(stop)
		<-done
		close(due)
		var got []time.Duration
		for at := range due {
			got = append(got, at.Sub(p.began))
		}
		require.Len(t, got, 10)
		for i, d := range got {
			// arrival 0 waits for the first tick (0.2 ms): within the grace
			want := time.Duration(i) * time.Millisecond
			if i == 0 {
				want = 200 * time.Microsecond
			}
			assert.Equal(t, want, d, "arrival %d", i)
		}
		assert.Zero(t, missed.Load())
	})
}
