package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
)

type sample struct {
	Addr    string            `env:"OBOL_T_ADDR,T_FALLBACK_ADDR" flag:"addr" default:"127.0.0.1:1" doc:"address"`
	Every   time.Duration     `env:"OBOL_T_EVERY" flag:"every" default:"10s" positive:"true" doc:"interval"`
	Wait    time.Duration     `env:"OBOL_T_WAIT" flag:"wait" doc:"delay (0: none)"`
	On      bool              `env:"OBOL_T_ON" flag:"on" doc:"switch"`
	N       int64             `env:"OBOL_T_N" flag:"n" default:"3" doc:"count"`
	Format  string            `env:"OBOL_T_FORMAT" flag:"format" default:"json" oneof:"json|text" doc:"format"`
	Pairs   map[string]string `env:"OBOL_T_PAIRS" flag:"pairs" doc:"pairs"`
	List    []string          `flag:"list" doc:"list"`
	DB      string            `env:"OBOL_T_DB" flag:"db" secret:"password" doc:"database"`
	Token   string            `env:"OBOL_T_TOKEN" secret:"true" doc:"token"`
	Trace   string            `env:"OBOL_T_TRACE" readby:"internal/telemetry" doc:"read elsewhere"`
	Ignored string
}

func load(t *testing.T, args []string) (sample, error) {
	t.Helper()
	var s sample
	err := cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), &s, args)
	return s, err
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, s sample)
	}{
		{"defaults", nil, nil, func(t *testing.T, s sample) {
			assert.Equal(t, sample{Addr: "127.0.0.1:1", Every: 10 * time.Second, N: 3, Format: "json"}, s)
		}},
		{"environment over the default", map[string]string{"OBOL_T_ADDR": "127.0.0.1:2", "OBOL_T_EVERY": "1m", "OBOL_T_ON": "true", "OBOL_T_TOKEN": "tok"}, nil, func(t *testing.T, s sample) {
			assert.Equal(t, "127.0.0.1:2", s.Addr)
			assert.Equal(t, time.Minute, s.Every)
			assert.True(t, s.On)
			assert.Equal(t, "tok", s.Token)
		}},
		{"the fallback variable when the first is unset", map[string]string{"T_FALLBACK_ADDR": "127.0.0.1:4"}, nil, func(t *testing.T, s sample) {
			assert.Equal(t, "127.0.0.1:4", s.Addr)
		}},
		{"the first variable over the fallback", map[string]string{"OBOL_T_ADDR": "127.0.0.1:5", "T_FALLBACK_ADDR": "127.0.0.1:4"}, nil, func(t *testing.T, s sample) {
			assert.Equal(t, "127.0.0.1:5", s.Addr)
		}},
		{"flags over the environment, after a positional-free list", map[string]string{"OBOL_T_ADDR": "127.0.0.1:2", "OBOL_T_N": "9"}, []string{"--addr", "127.0.0.1:3", "--n=7", "--on", "--list", "a, b,,c"}, func(t *testing.T, s sample) {
			assert.Equal(t, "127.0.0.1:3", s.Addr)
			assert.Equal(t, int64(7), s.N)
			assert.True(t, s.On)
			assert.Equal(t, []string{"a", "b", "c"}, s.List)
		}},
		{"a false flag over a true variable", map[string]string{"OBOL_T_ON": "true"}, []string{"--on=false"}, func(t *testing.T, s sample) {
			assert.False(t, s.On)
		}},
		{"pairs", map[string]string{"OBOL_T_PAIRS": "mer_a=stripe, mer_b=simulator"}, nil, func(t *testing.T, s sample) {
			assert.Equal(t, map[string]string{"mer_a": "stripe", "mer_b": "simulator"}, s.Pairs)
		}},
		{"a variable read by another package is documented, not loaded", map[string]string{"OBOL_T_TRACE": "zipkin"}, nil, func(t *testing.T, s sample) {
			assert.Empty(t, s.Trace)
		}},
		{"an empty flag where empty means none", nil, []string{"--db=", "--list="}, func(t *testing.T, s sample) {
			assert.Empty(t, s.DB)
			assert.Empty(t, s.List)
		}},
		{"a URL without a password by flag", nil, []string{"--db", "postgres://obol@127.0.0.1/x"}, func(t *testing.T, s sample) {
			assert.Equal(t, "postgres://obol@127.0.0.1/x", s.DB)
		}},
		{"a URL with a password from the environment", map[string]string{"OBOL_T_DB": "postgres://obol:pw@127.0.0.1/x"}, nil, func(t *testing.T, s sample) {
			assert.Equal(t, "postgres://obol:pw@127.0.0.1/x", s.DB)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s, err := load(t, tt.args)
			require.NoError(t, err)
			tt.check(t, s)
		})
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		is     error
		want   []string
		secret string
	}{
		{"duration without a unit", map[string]string{"OBOL_T_EVERY": "90"}, nil, cli.ErrBadEnv, []string{"OBOL_T_EVERY", "want a positive duration with a unit"}, "90"},
		{"duration in words", map[string]string{"OBOL_T_EVERY": "soon"}, nil, cli.ErrBadEnv, []string{"OBOL_T_EVERY"}, "soon"},
		{"zero where positive", map[string]string{"OBOL_T_EVERY": "0s"}, nil, cli.ErrBadEnv, []string{"OBOL_T_EVERY"}, ""},
		{"negative duration", map[string]string{"OBOL_T_WAIT": "-1h"}, nil, cli.ErrBadEnv, []string{"OBOL_T_WAIT", "want a duration with a unit, 0 or more"}, "-1h"},
		{"negative duration flag", nil, []string{"--wait=-5s"}, cli.ErrBadFlag, []string{"--wait", "0 or more"}, "-5s"},
		{"secret with a trailing newline", map[string]string{"OBOL_T_TOKEN": "tok3n-value\n"}, nil, cli.ErrBadEnv, []string{"OBOL_T_TOKEN", "leading or trailing whitespace"}, "tok3n-value"},
		{"address with a leading space", map[string]string{"OBOL_T_ADDR": " 127.0.0.1:2"}, nil, cli.ErrBadEnv, []string{"OBOL_T_ADDR", "leading or trailing whitespace"}, "127.0.0.1:2"},
		{"duration with a trailing space", nil, []string{"--every", "1m "}, cli.ErrBadFlag, []string{"--every", "leading or trailing whitespace (a newline from a file?); want a positive duration"}, ""},
		{"empty number flag", nil, []string{"--n="}, cli.ErrBadFlag, []string{"--n: the value is empty; want a whole number"}, ""},
		{"empty duration flag", nil, []string{"--wait", ""}, cli.ErrBadFlag, []string{"--wait: the value is empty"}, ""},
		{"empty bool flag", nil, []string{"--on="}, cli.ErrBadFlag, []string{"--on: the value is empty"}, ""},
		{"empty one-of flag", nil, []string{"--format", ""}, cli.ErrBadFlag, []string{"--format: the value is empty; want json or text"}, ""},
		{"empty text flag with a default", nil, []string{"--addr="}, cli.ErrBadFlag, []string{"--addr: the value is empty"}, ""},
		{"bool", map[string]string{"OBOL_T_ON": "yes-please"}, nil, cli.ErrBadEnv, []string{"OBOL_T_ON", "want true or false"}, "yes-please"},
		{"not one of", map[string]string{"OBOL_T_FORMAT": "yaml"}, nil, cli.ErrBadEnv, []string{"OBOL_T_FORMAT", "want json or text"}, "yaml"},
		{"pairs without a value", map[string]string{"OBOL_T_PAIRS": "mer_a="}, nil, cli.ErrBadEnv, []string{"OBOL_T_PAIRS", "key=value"}, "mer_a"},
		{"every bad variable at once", map[string]string{"OBOL_T_N": "x1", "OBOL_T_ON": "x2"}, nil, cli.ErrBadEnv, []string{"OBOL_T_N", "OBOL_T_ON"}, "x1"},
		{"bad flag value", nil, []string{"--every", "soon-ish"}, cli.ErrBadFlag, []string{"--every", "want a positive duration"}, "soon-ish"},
		{"bad bool flag", nil, []string{"--on=sure-thing"}, cli.ErrBadFlag, []string{"--on", "want true or false"}, "sure-thing"},
		{"password in a URL flag", nil, []string{"--db", "postgres://obol:hunter22@127.0.0.1/x"}, cli.ErrBadFlag, []string{"--db", "OBOL_T_DB"}, "hunter22"},
		{"password parameter in a URL flag", nil, []string{"--db", "postgres://obol@127.0.0.1/x?password=hunter22"}, cli.ErrBadFlag, []string{"--db"}, "hunter22"},
		{"password keyword in a libpq flag", nil, []string{"--db", "host=127.0.0.1 password=hunter22"}, cli.ErrBadFlag, []string{"--db"}, "hunter22"},
		{"password keyword with spaces in a libpq flag", nil, []string{"--db", "host=127.0.0.1 password = hunter22"}, cli.ErrBadFlag, []string{"--db", "OBOL_T_DB"}, "hunter22"},
		{"positional argument", nil, []string{"stray"}, cli.ErrBadFlag, []string{`unexpected argument "stray"`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := load(t, tt.args)
			require.ErrorIs(t, err, tt.is)
			for _, w := range tt.want {
				assert.ErrorContains(t, err, w)
			}
			if tt.secret != "" {
				assert.NotContains(t, err.Error(), tt.secret, "values are never echoed")
			}
		})
	}
}

// TestFlagErrorsNeverRepeatWhatWasTyped: pflag's own parse errors repeat
// the argument; a secret typed by mistake must not reach the terminal log.
func TestFlagErrorsNeverRepeatWhatWasTyped(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown shorthand", []string{"-ps3cret"}, "unknown shorthand flag: 'p'"},
		{"bad syntax", []string{"---db=s3cret"}, "bad flag syntax"},
		{"shorthand needs an argument", []string{"-x"}, "unknown shorthand flag: 'x'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.args)
			require.ErrorContains(t, err, tt.want)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Int("limit", 1, "")
	err := cli.FlagError(fs.Parse([]string{"--limit", "s3cret"}))
	require.ErrorIs(t, err, cli.ErrBadFlag)
	require.ErrorContains(t, err, "--limit: the value does not parse")
	assert.NotContains(t, err.Error(), "s3cret")
}

func TestLoadUnknownFlag(t *testing.T) {
	_, err := load(t, []string{"--token", "x"})
	require.ErrorContains(t, err, "unknown flag: --token", "a secret has no flag")
}

func TestSettingsRefuseMalformedTags(t *testing.T) {
	tests := []struct {
		name string
		cfg  any
	}{
		{"secret with a flag", &struct {
			T string `env:"OBOL_X" flag:"x" secret:"true" doc:"d"`
		}{}},
		{"secret with a default", &struct {
			T string `env:"OBOL_X" secret:"true" default:"d" doc:"d"`
		}{}},
		{"no doc", &struct {
			T string `env:"OBOL_X"`
		}{}},
		{"bad default", &struct {
			T time.Duration `env:"OBOL_X" default:"soon" doc:"d"`
		}{}},
		{"unsupported type", &struct {
			T float64 `env:"OBOL_X" doc:"d"`
		}{}},
		{"not a pointer", struct{}{}},
		{"daemon variable outside envprefix", &struct {
			T string `env:"OBOL_*_X" doc:"d"`
		}{}},
		{"daemon variable in a doc outside envprefix", &struct {
			T string `env:"OBOL_X" doc:"see OBOL_*_Y"`
		}{}},
		{"was without a variable", &struct {
			T string `flag:"x" was:"OBOL_OLD" doc:"d"`
		}{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Panics(t, func() { cli.Settings(tt.cfg) })
		})
	}
}

func TestEnvHelpNamesEnvironmentOnlySettings(t *testing.T) {
	h := cli.EnvHelp(&sample{})
	assert.Contains(t, h, "OBOL_T_TOKEN")
	assert.Contains(t, h, "(secret, environment only)")
	assert.NotContains(t, h, "OBOL_T_ADDR", "a flag's usage names its variables")
}

func TestUnknownEnv(t *testing.T) {
	t.Setenv("OBOL_T_KNOWN", "1")
	t.Setenv("OBOL_T_TYPO", "secret-value")
	t.Setenv("OBOL_TEST_HARNESS", "1")
	got := cli.UnknownEnv(map[string]bool{"OBOL_T_KNOWN": true}, "OBOL_TEST_")
	assert.Contains(t, got, "OBOL_T_TYPO")
	assert.NotContains(t, got, "OBOL_T_KNOWN")
	assert.NotContains(t, got, "OBOL_TEST_HARNESS")
}

// FuzzLoad: any value, in any flag or variable, loads or is refused with
// ErrBadFlag or ErrBadEnv, never a panic, and a refusal never repeats it.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{"", "90", "1h", "-5s", "mer_a=stripe,mer_b=", "true", "postgres://u:p@h/db", "a,b,,c", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, name := range []string{"addr", "every", "on", "n", "format", "pairs", "list", "db"} {
			_, err := load(t, []string{"--" + name + "=" + raw})
			if err != nil {
				require.ErrorIs(t, err, cli.ErrBadFlag)
				if len(raw) >= 12 {
					assert.NotContains(t, err.Error(), raw)
				}
			}
		}
		if strings.ContainsRune(raw, 0) {
			return // not a possible environment value
		}
		for _, key := range []string{"OBOL_T_EVERY", "OBOL_T_N", "OBOL_T_PAIRS", "OBOL_T_FORMAT"} {
			t.Setenv(key, raw)
			_, err := load(t, nil)
			if err != nil {
				require.ErrorIs(t, err, cli.ErrBadEnv)
				if len(raw) >= 12 {
					assert.NotContains(t, err.Error(), raw)
				}
			}
			t.Setenv(key, "")
		}
	})
}

// listener is a daemon's own settings, embedded with envprefix.
type listener struct {
	Addr string `env:"OBOL_*_ADDR" was:"OBOL_ADDR" flag:"addr" doc:"listen address (see OBOL_*_CERT)"`
	Cert string `env:"OBOL_*_CERT" was:"OBOL_CERT" flag:"cert" doc:"certificate" note:"required"`
}

// alphaListener is the same settings for a second daemon (flags differ:
// they are per binary).
type alphaListener struct {
	Addr string `env:"OBOL_*_ADDR" was:"OBOL_ADDR" flag:"alpha-addr" doc:"listen address (see OBOL_*_CERT)"`
	Cert string `env:"OBOL_*_CERT" was:"OBOL_CERT" flag:"alpha-cert" doc:"certificate" note:"required"`
}

type twoDaemons struct {
	alphaListener `envprefix:"ALPHAD"`
	listener      `envprefix:"BETAD"`
	DB            string `env:"OBOL_BETA_DB" was:"OBOL_DB,OBOL_OLD_DB" flag:"db" doc:"database"`
}

// TestEnvPrefix: OBOL_*_ in a struct embedded with envprefix is the
// daemon's own variable, in env, doc and was alike; a note follows the doc.
func TestEnvPrefix(t *testing.T) {
	var c struct {
		listener `envprefix:"ALPHAD"`
	}
	ss := cli.Settings(&c)
	require.Len(t, ss, 2)
	assert.Equal(t, []string{"OBOL_ALPHAD_ADDR"}, ss[0].Env)
	assert.Equal(t, "listen address (see OBOL_ALPHAD_CERT)", ss[0].Doc)
	assert.Equal(t, []string{"OBOL_ADDR"}, ss[0].Was)
	assert.Equal(t, "certificate; required", ss[1].Text())
	t.Setenv("OBOL_ALPHAD_ADDR", "127.0.0.1:7")
	require.NoError(t, cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), &c, nil))
	assert.Equal(t, "127.0.0.1:7", c.Addr)
}

// TestRenamedVariableRefused: a former name set in the environment stops
// the start naming its replacement, never its value; unset, it is silent.
func TestRenamedVariableRefused(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"one former name", map[string]string{"OBOL_DB": "postgres://x:hunter22@h/db"}, []string{"OBOL_DB is no longer read: set OBOL_BETA_DB"}},
		{"second former name", map[string]string{"OBOL_OLD_DB": "postgres://x:hunter22@h/db"}, []string{"OBOL_OLD_DB is no longer read: set OBOL_BETA_DB"}},
		{"a shared former name names every replacement", map[string]string{"OBOL_CERT": "hunter22.pem"}, []string{"OBOL_CERT is no longer read: set OBOL_ALPHAD_CERT or OBOL_BETAD_CERT"}},
		{"every former name at once", map[string]string{"OBOL_ADDR": "hunter22", "OBOL_DB": "hunter22"}, []string{"OBOL_ADDR is no longer read", "OBOL_DB is no longer read"}},
		{"even next to its replacement", map[string]string{"OBOL_ADDR": "hunter22", "OBOL_BETAD_ADDR": "127.0.0.1:1"}, []string{"OBOL_ADDR is no longer read: set OBOL_ALPHAD_ADDR or OBOL_BETAD_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var c twoDaemons
			err := cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), &c, nil)
			require.ErrorIs(t, err, cli.ErrBadEnv)
			for _, w := range tt.want {
				assert.ErrorContains(t, err, w)
			}
			assert.NotContains(t, err.Error(), "hunter22", "values are never echoed")
		})
	}
	t.Run("two daemons in one struct", func(t *testing.T) {
		var c twoDaemons
		ss := cli.Settings(&c)
		var envs []string
		for _, s := range ss {
			envs = append(envs, s.Var())
		}
		assert.Equal(t, []string{"OBOL_ALPHAD_ADDR", "OBOL_ALPHAD_CERT", "OBOL_BETAD_ADDR", "OBOL_BETAD_CERT", "OBOL_BETA_DB"}, envs)
		t.Setenv("OBOL_ADDR", "x")
		assert.Equal(t, []string{"OBOL_ADDR is no longer read: set OBOL_ALPHAD_ADDR or OBOL_BETAD_ADDR"}, cli.Renamed(ss))
	})
	t.Run("unset former names are silent", func(t *testing.T) {
		var c twoDaemons
		require.NoError(t, cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), &c, nil))
	})
}
