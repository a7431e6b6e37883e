package clitest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/telemetry"
)

// BadVar is an environment variable set to a value that does not parse.
type BadVar struct {
	Name, Key, Value string
}

// SharedBadVars are variables every daemon has (its HTTP edge, named with
// the daemon's prefix, e.g. "OBOL_GATEWAYD_", and its log settings).
func SharedBadVars(prefix string) []BadVar {
	return []BadVar{
		{"edge bool", prefix + "HTTP_TLS", "yes-please"},
		{"edge integer", prefix + "AUTH_FAIL_LIMIT", "twenty"},
		{"edge positive integer", prefix + "AUTH_FAIL_PREFIX_LIMIT", "-3"},
		{"edge duration", prefix + "AUTH_FAIL_WINDOW", "soon"},
		{"log format not one of json or text", "OBOL_LOG_FORMAT", "yaml"},
	}
}

// secretValue is what every secret variable is set to while -h runs: it
// must never show.
const secretValue = "s3cret-never-printed"

// Config checks a daemon's configuration edge (cfg is a pointer to its
// config struct, e.g. &config.Vaultd{}):
//   - -h and --help end with pflag.ErrHelp or nil (the binary exits 0 on
//     either, see cli.Exit), print to cli.UsageOutput and list every
//     setting (its variables, flag and doc), secrets marked environment
//     only, without printing a secret's value;
//   - every bad variable (bad, then SharedBadVars(prefix) unless prefix,
//     the daemon's variable prefix, is empty) stops the start with
//     ErrBadEnv naming the variable and the accepted form, without echoing
//     the value;
//   - every former name of a setting (its was tag) set in the environment
//     stops the start naming the setting's variable;
//   - a bad flag value, an unknown flag and a password in a URL flag stop it
//     with ErrBadFlag naming the flag, without echoing the value.
func Config(t *testing.T, run func(ctx context.Context, args []string) error, cfg any, prefix string, bad []BadVar) {
	t.Helper()
	settings := cli.Settings(cfg)
	for _, arg := range []string{"-h", "--help"} {
		t.Run("help "+arg, func(t *testing.T) {
			for _, s := range settings {
				if s.Secret {
					for _, e := range s.Env {
						t.Setenv(e, secretValue)
					}
				}
			}
			var out bytes.Buffer
			prev := cli.UsageOutput
			cli.UsageOutput = &out
			defer func() { cli.UsageOutput = prev }()
			if err := run(context.Background(), []string{arg}); err != nil { // cobra commands answer nil
				require.ErrorIs(t, err, pflag.ErrHelp)
			}
			for _, s := range settings {
				for _, e := range s.Env {
					assert.Contains(t, out.String(), e, "-h names every variable")
				}
				if s.Flag != "" {
					assert.Contains(t, out.String(), "--"+s.Flag)
				}
				assert.Contains(t, oneLine(out.String()), s.Text(), "-h gives every setting's doc")
				if s.Secret {
					assert.Contains(t, oneLine(out.String()), s.Text()+" (secret, environment only", "-h marks %s environment only", s.Var())
				}
			}
			assert.NotContains(t, out.String(), secretValue, "-h never prints a secret")
		})
	}
	all := append([]BadVar{}, bad...)
	if prefix != "" {
		all = append(all, SharedBadVars(prefix)...)
	}
	for _, s := range settings {
		for _, w := range s.Was {
			t.Run("former variable "+w, func(t *testing.T) {
				t.Setenv(w, secretValue)
				err := run(context.Background(), nil)
				require.ErrorIs(t, err, cli.ErrBadEnv)
				require.ErrorContains(t, err, w+" is no longer read: set ")
				require.ErrorContains(t, err, s.Var())
				require.NotContains(t, err.Error(), secretValue)
			})
		}
	}
	for _, tt := range all {
		t.Run(tt.Name, func(t *testing.T) {
			t.Setenv(tt.Key, tt.Value)
			err := run(context.Background(), nil)
			require.ErrorIs(t, err, cli.ErrBadEnv)
			require.ErrorContains(t, err, tt.Key)
			require.ErrorContains(t, err, "want ")
			require.NotContains(t, err.Error(), tt.Value, "the value is never echoed (it may be a secret)")
		})
	}
	t.Run("unknown flag", func(t *testing.T) {
		require.ErrorContains(t, run(context.Background(), []string{"--no-such-flag"}), "unknown flag: --no-such-flag")
	})
	t.Run("unexpected argument", func(t *testing.T) {
		require.ErrorContains(t, run(context.Background(), []string{"stray"}), `"stray"`)
	})
	for _, s := range settings {
		if s.Flag == "" {
			continue
		}
		switch {
		case s.Type == "duration" || s.Type == "int":
			t.Run("bad flag --"+s.Flag, func(t *testing.T) {
				err := run(context.Background(), []string{"--" + s.Flag, "soon-ish"})
				require.ErrorIs(t, err, cli.ErrBadFlag)
				require.ErrorContains(t, err, "--"+s.Flag)
				require.ErrorContains(t, err, "want "+s.Form)
				require.NotContains(t, err.Error(), "soon-ish")
			})
		case s.Password:
			t.Run("password in --"+s.Flag, func(t *testing.T) {
				err := run(context.Background(), []string{"--" + s.Flag, "postgres://obol:" + secretValue + "@127.0.0.1:1/x"})
				require.ErrorIs(t, err, cli.ErrBadFlag)
				require.ErrorContains(t, err, "--"+s.Flag)
				require.ErrorContains(t, err, s.Var())
				require.NotContains(t, err.Error(), secretValue)
			})
		}
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

// oneLine joins the lines of a help text, so that a doc wrapped by the
// flag printer (cobra's Long is not wrapped, pflag's usages are not
// either, but a doc may hold a newline) still matches; spaces are
// collapsed.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
