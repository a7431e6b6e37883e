package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly, and a bad flag value (e.g. --suite vaults,
// --duration 10) stops the load tool with a message naming it.
func TestConfig(t *testing.T) {
	clitest.Config(t, func(_ context.Context, args []string) error { _, err := parse(args); return err }, &config.Load{}, "", nil)
}

// TestRateFlag: --rate takes 0 (closed loop) to maxRate operations per
// second and refuses anything else, naming the flag.
func TestRateFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		arg  string
		want int
		err  string
	}{
		{"default closed loop", "", 0, ""},
		{"open loop", "--suite=risk --rate=10000", 10000, ""},
		{"the most", "--suite=risk --rate=1000000", maxRate, ""},
		{"negative", "--rate=-1", 0, "--rate: -1 is out of range"},
		{"above an arrival per microsecond", "--rate=1000001", 0, "--rate: 1000001 is out of range"},
		{"not a number", "--rate=fast", 0, "--rate"},
		{"the floor's primitives", "--suite=floor --rate=10000", 10000, ""},
		{"a closed-loop suite", "--suite=payments --rate=100", 0, "--rate: an open loop is measured with --suite risk or floor only, not payments"},
		{"the vault suite", "--suite=vault --rate=100", 0, "not vault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := strings.Fields(tc.arg)
			c, err := parse(args)
			if tc.err != "" {
				require.ErrorIs(t, err, cli.ErrBadFlag)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, c.Rate)
		})
	}
}
