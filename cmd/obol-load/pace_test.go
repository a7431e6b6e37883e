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
		rate, per int64
		buf       int
		measuring bool
		now       time.Duration // since began
		want      []time.Duration
		wantLate  []time.Duration
		wantMiss  int64
	}{
		{"on time", 1000, 0, 10, true, 0, []time.Duration{0}, []time.Duration{0}, 0},
		{"a tick 2 ms in", 1000, 0, 10, true, 2 * ms, []time.Duration{ms, 2 * ms, 2 * ms}, []time.Duration{2 * ms, ms, 0}, 0},
		{"late within the grace: stamped when queued", 1000, 0, 10, true, 1500 * time.Microsecond,
			[]time.Duration{ms, 1500 * time.Microsecond}, []time.Duration{1500 * time.Microsecond, 500 * time.Microsecond}, 0},
		{"a stalled tick: the lateness beyond the grace counts", 1000, 0, 10, true, 5 * ms,
			[]time.Duration{ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 5 * ms}, []time.Duration{5 * ms, 4 * ms, 3 * ms, 2 * ms, ms, 0}, 0},
		{"uneven spacing without drift", 3000, 0, 10, true, 1 * ms,
			[]time.Duration{ms, ms, ms, ms}, []time.Duration{ms, 666_667, 333_334, 0}, 0},
		{"a full queue misses the rest", 1000, 0, 2, true, 4 * ms, []time.Duration{ms, 2 * ms}, []time.Duration{4 * ms, 3 * ms, 2 * ms, ms, 0}, 3},
		{"misses not counted in the warm-up", 1000, 0, 2, false, 4 * ms, []time.Duration{ms, 2 * ms}, nil, 0},
		{"batches of 32 at 10,000 units/s: one every 3.2 ms", 10000, 32, 10, true, 7 * ms,
			[]time.Duration{ms, 4200 * time.Microsecond, 7 * ms}, []time.Duration{7 * ms, 3800 * time.Microsecond, 600 * time.Microsecond}, 0},
		{"fewer units a second than a batch holds", 10, 32, 10, true, 6400 * ms,
			[]time.Duration{ms, 3201 * ms, 6400 * ms}, []time.Duration{6400 * ms, 3200 * ms, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			due := make(chan time.Time, tc.buf)
			var missed atomic.Int64
			win := &window{base: began.Add(-time.Hour)}
			if tc.measuring {
				win.begin(began)
			}
			p := &pacer{due: due, rate: tc.rate, per: tc.per, began: began, missed: &missed, win: win}
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
		win := newWindow()
		win.begin(win.base)
		p := &pacer{due: due, rate: 1000, began: time.Now(), missed: &missed, win: win}
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

// TestWindow: an operation counts in the window it started (was due) in,
// wherever it ended; nothing counts before the window began.
func TestWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	w := &window{base: t0.Add(-time.Minute)}
	assert.False(t, w.in(t0), "not begun")
	w.begin(t0)
	assert.True(t, w.in(t0), "the first instant")
	assert.False(t, w.in(t0.Add(-time.Nanosecond)), "before it")
	assert.True(t, w.in(t0.Add(time.Hour)), "not ended yet")
	w.end(t0.Add(time.Second))
	assert.True(t, w.in(t0.Add(time.Second-time.Nanosecond)))
	assert.False(t, w.in(t0.Add(time.Second)), "the end is out")
}

// TestLeftInWindow: arrivals still queued after the clients stopped count
// as missed when they were due in the window, not when due after it.
func TestLeftInWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	w := &window{base: t0.Add(-time.Minute)}
	w.begin(t0)
	w.end(t0.Add(time.Second))
	due := make(chan time.Time, 10)
	for _, d := range []time.Duration{-time.Millisecond, 0, 500 * time.Millisecond, 999 * time.Millisecond, time.Second, 2 * time.Second} {
		due <- t0.Add(d)
	}
	assert.Equal(t, int64(3), leftInWindow(due, w))
	assert.Empty(t, due, "drained")
}

// TestRunAt: an open loop the operation cannot keep up with. Its latencies
// are those of the arrivals due in the window, the slow ones queued at its
// end included (drained after it); what is still queued when the drain's
// limit ends it is missed; throughput counts what ended in the window.
// Every arrival due in the window is either measured or missed.
func TestRunAt(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opTime     time.Duration
		wantRate   float64 // ended in the window, per second
		wantMissed int64   // of the 1,000 due in the window
	}{
		// 500/s served: 500 due in the window are still queued at its
		// end, and drained in the next second.
		{"the drain takes the backlog", 2 * time.Millisecond, 500, 0},
		// 50/s: 950 queued at the end, 250 of them served in the 5 s
		// drain, 700 left.
		{"the drain limit ends it", 20 * time.Millisecond, 50, 700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				op := func() error { time.Sleep(tc.opTime); return nil }
				r := runAt("slow op", op, 1, 0, time.Second, nil, nil, 1000, 1)
				assert.InDelta(t, tc.wantRate, r.rps, 2)
				assert.InDelta(t, tc.wantMissed, r.missed, 2)
				assert.InDelta(t, 1000, r.measured+r.missed, 1, "every arrival due in the window: measured %d, missed %d", r.measured, r.missed)
				if tc.wantMissed == 0 {
					// the last arrivals waited about half a second each
					// in the window, then the drain: p99 near a second
					assert.Greater(t, r.p99, 900*time.Millisecond)
				}
			})
		})
	}
}
