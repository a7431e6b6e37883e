package main

import (
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly and lists every variable, and a value that
// does not parse stops vaultd with a message naming it and the accepted
// form (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.Vaultd{}, "OBOL_VAULTD_", []clitest.BadVar{
		{Name: "duration without a unit", Key: "OBOL_CVC_TTL", Value: "90"},
		{Name: "negative duration", Key: "OBOL_DEK_MAX_AGE", Value: "-1h"},
		{Name: "integer", Key: "OBOL_DEK_MAX_USES", Value: "lots"},
		{Name: "bool", Key: "OBOL_NO_AUTO_REWRAP", Value: "maybe"},
		{Name: "require nonce bool", Key: "OBOL_VAULTD_REQUIRE_REQUEST_NONCE", Value: "sometimes"},
	})
}

// TestRequireRequestNonceSetting: --require-request-nonce and
// OBOL_VAULTD_REQUIRE_REQUEST_NONCE reach vaultd's configuration; it is off
// by default (older gateways keep working during an upgrade), and a value
// that is not a boolean is refused, naming the setting.
func TestRequireRequestNonceSetting(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  string
		want bool
		err  string
	}{
		{name: "default", want: false},
		{name: "flag", args: []string{"--require-request-nonce"}, want: true},
		{name: "environment", env: "true", want: true},
		{name: "environment false", env: "false", want: false},
		{name: "not a boolean", env: "sometimes", err: "OBOL_VAULTD_REQUIRE_REQUEST_NONCE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("OBOL_VAULTD_REQUIRE_REQUEST_NONCE", tc.env)
			}
			var c config.Vaultd
			err := cli.Parse(pflag.NewFlagSet("vaultd", pflag.ContinueOnError), &c, tc.args)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, vaultdConfig(&c).RequireRequestNonce)
		})
	}
}
