package main

import (
	"testing"

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

// TestOpsAt: the floor's open loop sends rate units a second, a batch of
// rows counting perOp of them, never fewer than one operation a second; a
// closed loop stays closed.
func TestOpsAt(t *testing.T) {
	for _, tc := range []struct {
		name              string
		rate, perOp, want int
	}{
		{"closed loop", 0, 1, 0},
		{"closed loop, batches", 0, 32, 0},
		{"one unit per operation", 10000, 1, 10000},
		{"32-row batches", 10000, 32, 312},
		{"fewer units than a batch", 10, 32, 1},
		{"perOp not set", 500, 0, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, opsAt(tc.rate, tc.perOp))
		})
	}
}
