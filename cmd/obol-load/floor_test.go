package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseFdatasync reads the first fdatasync rate (one 8 kB write) of
// pg_test_fsync's output, and refuses output without one.
func TestParseFdatasync(t *testing.T) {
	const full = `1 second per test
O_DIRECT supported on this platform for open_datasync and open_sync.

Compare file sync methods using one 8kB write:
(in wal_sync_method preference order, except fdatasync is Linux's default)
        open_datasync                       301.970 ops/sec    3312 usecs/op
        fdatasync                          1858.249 ops/sec     538 usecs/op
        fsync                               947.917 ops/sec    1055 usecs/op

Compare file sync methods using two 8kB writes:
        fdatasync                          1012.862 ops/sec     987 usecs/op
`
	cases := []struct {
		name    string
		out     string
		want    float64
		wantErr string
	}{
		{name: "first fdatasync line wins", out: full, want: 1858.249},
		{name: "thousands separator", out: "        fdatasync       12,345.5 ops/sec      81 usecs/op\n", want: 12345.5},
		{name: "no fdatasync line", out: "open_datasync 301.970 ops/sec\n", wantErr: "no fdatasync line"},
		{name: "empty output", out: "", wantErr: "no fdatasync line"},
		{name: "n/a is not a rate", out: "        fdatasync                              n/a\n", wantErr: "no fdatasync line"},
		{name: "zero rate", out: "        fdatasync   0.000 ops/sec   0 usecs/op\n", wantErr: "unreadable rate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseFdatasync([]byte(c.out))
			if c.wantErr != "" {
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, c.want, got, 1e-9)
		})
	}
}

// TestPrintFloor: a closed loop's table has the ceilings' column; a fixed
// rate's names the rate, leaves the ceilings out, counts what was not
// sent in units (a batch is 32), and says n/a for a phase that measured
// nothing.
func TestPrintFloor(t *testing.T) {
	prims := []primitive{
		{name: "loopback", perOp: 1, one: result{ops: 100, p50: 20 * time.Microsecond}, many: result{rps: 1000, ops: 1000, p50: time.Millisecond, p99: 2 * time.Millisecond}, cpuMs: 0.5},
		{name: "batched row", perOp: batch, one: result{ops: 10}, many: result{rps: 10, ops: 10, missed: 3, p50: time.Millisecond, p99: time.Millisecond}, cpuMs: 0.01},
		{name: "nothing measured", perOp: 1},
	}
	for _, tc := range []struct {
		name      string
		rate      int
		na        int // columns of the phase that measured nothing
		want, not []string
	}{
		{"closed loop", 0, 5, []string{"32 clients: p50 / p99", "32 clients, units/s", "units/s at 2000 CPU-ms/s", " 4000", " 320 ", "96 units not sent"}, []string{"offered", "units/s done"}},
		{"fixed rate", 5000, 4, []string{"5000 units/s: p50 / p99", "units/s done", "less up to 1ms", "96 units not sent"}, []string{"CPU-ms/s", " 4000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printFloor(&b, prims, 32, tc.rate, 2000)
			out := b.String()
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, out, n)
			}
			lines := strings.Split(out, "\n")
			var last string
			for _, l := range lines {
				if strings.HasPrefix(l, "nothing measured") {
					last = l
				}
			}
			require.NotEmpty(t, last)
			assert.Equal(t, tc.na, strings.Count(last, "n/a"), "every figure of a primitive that measured nothing: %q", last)
		})
	}
}

// TestGCSettings: the line says what the runtime runs with, as it was set.
func TestGCSettings(t *testing.T) {
	pct := debug.SetGCPercent(250)
	limit := debug.SetMemoryLimit(300 << 20)
	t.Cleanup(func() { debug.SetGCPercent(pct); debug.SetMemoryLimit(limit) })
	assert.Contains(t, gcSettings(), "GC percent 250, memory limit 300 MiB")
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(math.MaxInt64)
	assert.Contains(t, gcSettings(), "GC percent off, memory limit none")
}
