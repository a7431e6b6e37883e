package clitest

import (
	"context"
	"flag"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
)

// BadVar is an environment variable set to a value that does not parse.
type BadVar struct {
	Name, Key, Value string
}

// SharedBadVars are variables every daemon reads (its HTTP edge flags).
var SharedBadVars = []BadVar{
	{"edge bool", "OBOL_HTTP_TLS", "yes-please"},
	{"edge integer", "OBOL_AUTH_FAIL_LIMIT", "twenty"},
}

// Config checks a daemon's configuration edge: -h and --help end without
// an error other than flag.ErrHelp (the binary exits 0 on it, see
// cli.Exit), and every bad variable stops the start with ErrBadEnv naming
// the variable and the accepted form, without echoing the value.
func Config(t *testing.T, run func(ctx context.Context, args []string) error, bad []BadVar) {
	t.Helper()
	for _, arg := range []string{"-h", "--help"} {
		t.Run("help "+arg, func(t *testing.T) {
			require.ErrorIs(t, run(context.Background(), []string{arg}), flag.ErrHelp)
		})
	}
	for _, tt := range append(append([]BadVar{}, SharedBadVars...), bad...) {
		t.Run(tt.Name, func(t *testing.T) {
			t.Setenv(tt.Key, tt.Value)
			err := run(context.Background(), nil)
			require.ErrorIs(t, err, cli.ErrBadEnv)
			require.ErrorContains(t, err, tt.Key)
			require.ErrorContains(t, err, "want ")
			require.NotContains(t, err.Error(), tt.Value, "the value is never echoed (it may be a secret)")
		})
	}
}
