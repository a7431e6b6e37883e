package clitest

import (
	"context"
	"flag"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/telemetry"
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

// Tracing checks that a tracing setting the daemon does not understand
// stops the start with telemetry.ErrConfig naming the variable, never
// silently ignored.
func Tracing(t *testing.T, run func(ctx context.Context, args []string) error) {
	t.Helper()
	for _, c := range []struct{ name, key, value string }{
		{"unknown mode", "OBOL_TRACING", "zipkin"},
		{"unsupported protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.key, c.value)
			err := run(context.Background(), []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"})
			require.ErrorIs(t, err, telemetry.ErrConfig)
			require.ErrorContains(t, err, c.key)
		})
	}
}
