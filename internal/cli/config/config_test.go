package config_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/service"
)

// TestBinariesDescribeThemselves: every struct's tags are well formed
// (cli.Settings panics otherwise), and every secret is environment only.
func TestBinariesDescribeThemselves(t *testing.T) {
	for _, b := range config.Binaries {
		t.Run(b.Name, func(t *testing.T) {
			var ss []*cli.Setting
			require.NotPanics(t, func() { ss = cli.Settings(b.Config) })
			require.NotEmpty(t, ss)
			for _, s := range ss {
				if s.Secret {
					assert.Empty(t, s.Flag, "%s is secret: environment only", s.Var())
				}
			}
		})
	}
}

// TestDefaultsMatchTheCode: the defaults written in tags are the ones the
// packages define.
func TestDefaultsMatchTheCode(t *testing.T) {
	var v config.Vaultd
	cli.Settings(&v)
	assert.Equal(t, service.DefaultGatewayIdentity, v.GatewayIdentity)
	assert.Equal(t, transit.DefaultKubernetesJWTFile, v.KubernetesJWTFile)
	assert.Equal(t, int64(authlimit.DefaultPerAddress), v.PerAddress)
	assert.Equal(t, int64(authlimit.DefaultPerPrefix), v.PerPrefix)
	assert.Equal(t, authlimit.DefaultWindow, v.Window)
	assert.Equal(t, time.Hour, v.DEKMaxAge)
}

func TestUnknown(t *testing.T) {
	t.Setenv("OBOL_CVC_TLL", "1h") // a typo
	t.Setenv("OBOL_CVC_TTL", "1h")
	t.Setenv("OBOL_TEST_POSTGRES_URL", "postgres://x")
	u := config.Unknown()
	assert.Contains(t, u, "OBOL_CVC_TLL")
	assert.NotContains(t, u, "OBOL_CVC_TTL")
	assert.NotContains(t, u, "OBOL_TEST_POSTGRES_URL", "the test harness's variables are not warned about")
}

// TestWarnUnknownNamesRenamedVariables: a former name is warned about
// with what replaced it, not as a typo, and never with its value.
func TestWarnUnknownNamesRenamedVariables(t *testing.T) {
	t.Setenv("OBOL_POSTGRES_URL", "postgres://x:hunter22@h/db")
	t.Setenv("OBOL_CVC_TLL", "1h")
	typos, renamed := config.SplitUnknown()
	assert.Equal(t, []string{"OBOL_CVC_TLL"}, typos)
	assert.Equal(t, []string{"OBOL_POSTGRES_URL (now OBOL_VAULT_POSTGRES_URL)"}, renamed)
	var b bytes.Buffer
	config.WarnUnknown(slog.New(slog.NewTextHandler(&b, nil)))
	assert.Contains(t, b.String(), "OBOL_POSTGRES_URL (now OBOL_VAULT_POSTGRES_URL)")
	assert.NotContains(t, b.String(), "hunter22")
	assert.Contains(t, config.Former()["OBOL_HTTP_ADDR"], "OBOL_GATEWAYD_HTTP_ADDR")
	assert.Len(t, config.Former()["OBOL_HTTP_ADDR"], 5, "one per daemon")
}

func TestWarnUnknownNamesOnlyTheVariables(t *testing.T) {
	t.Setenv("OBOL_CVC_TLL", "s3cret-value")
	var b bytes.Buffer
	config.WarnUnknown(slog.New(slog.NewTextHandler(&b, nil)))
	assert.Contains(t, b.String(), "level=WARN")
	assert.Contains(t, b.String(), "OBOL_CVC_TLL")
	assert.NotContains(t, b.String(), "s3cret-value", "values are never logged")
}

// TestRefusedAtStart: values found wrong by trying the binaries are
// refused by the loader, naming the variable, never silently replaced.
func TestRefusedAtStart(t *testing.T) {
	tests := []struct {
		name string
		cfg  any
		env  map[string]string
		want string
	}{
		{"riskd fallback not an action", &config.Riskd{}, map[string]string{"OBOL_RISK_FALLBACK": "Block"}, "OBOL_RISK_FALLBACK: the value does not parse; want one of allow, review, challenge, block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), tt.cfg, nil)
			require.ErrorIs(t, err, cli.ErrBadEnv)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

// meaning is what a variable means: the same in every binary reading it.
type meaning struct {
	Doc, Form, Type, ReadBy string
	Secret, Password        bool
}

// TestOneMeaningPerVariable walks every binary's config struct: a variable
// read by several binaries has one doc, form and type in all of them (so
// one environment file can serve them all), and no binary reads one
// variable for two settings.
func TestOneMeaningPerVariable(t *testing.T) {
	seen := map[string]meaning{}
	where := map[string]string{}
	for _, b := range config.Binaries {
		mine := map[string]string{}
		for _, s := range cli.Settings(b.Config) {
			m := meaning{s.Doc, s.Form, s.Type, s.ReadBy, s.Secret, s.Password}
			for _, e := range s.Env {
				if f, ok := mine[e]; ok {
					t.Errorf("%s reads %s for two settings (%s, %s)", b.Name, e, f, s.Field)
				}
				mine[e] = s.Field
				if prev, ok := seen[e]; ok {
					assert.Equal(t, prev, m, "%s means one thing in %s and another in %s", e, where[e], b.Name)
					continue
				}
				seen[e], where[e] = m, b.Name
			}
		}
	}
	require.Greater(t, len(seen), 100, "the walk found every binary's variables")
}

// TestFormerVariablesAreReadByNone: a renamed variable is read by no
// binary any more (else it would mean two things), and the daemons' own
// server settings carry the daemon's name.
func TestFormerVariablesAreReadByNone(t *testing.T) {
	known := config.Known()
	formers := 0
	for _, b := range config.Binaries {
		for _, s := range cli.Settings(b.Config) {
			for _, w := range s.Was {
				formers++
				assert.False(t, known[w], "%s (a former name of %s) is still read", w, s.Var())
			}
		}
	}
	assert.Greater(t, formers, 20)
	daemons := []struct {
		name, prefix string
		cfg          any
	}{
		{"vaultd", "OBOL_VAULTD_", &config.Vaultd{}},
		{"gatewayd", "OBOL_GATEWAYD_", &config.Gatewayd{}},
		{"riskd", "OBOL_RISKD_", &config.Riskd{}},
		{"ledgerd", "OBOL_LEDGERD_", &config.Ledgerd{}},
		{"eventsd", "OBOL_EVENTSD_", &config.Eventsd{}},
	}
	for _, d := range daemons {
		t.Run(d.name, func(t *testing.T) {
			for _, s := range cli.Settings(d.cfg) {
				if strings.HasPrefix(s.Field, "ServerTLS.") || strings.HasPrefix(s.Field, "EdgeConfig.") || slices.Contains([]string{"GRPCAddr", "HTTPAddr", "ClientCA", "Common.Reflection"}, s.Field) {
					assert.True(t, strings.HasPrefix(s.Var(), d.prefix), "%s's %s is its own: %s", d.name, s.Field, s.Var())
				}
			}
		})
	}
}

// envFile reads KEY=VALUE lines (comments and blank lines skipped).
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "line %q", line)
		env[k] = v
	}
	return env
}

// TestOneEnvFileForEveryDaemon loads deploy/obol.env.example, which holds
// every daemon's settings, into each daemon's configuration: every daemon
// starts from it (no refusal, no unknown variable) with its own listeners,
// certificates, database and Redis.
func TestOneEnvFileForEveryDaemon(t *testing.T) {
	env := envFile(t, "../../../deploy/obol.env.example")
	for k, v := range env {
		t.Setenv(k, v)
	}
	assert.Empty(t, config.Unknown(), "every variable of the file is read by some binary")
	parse := func(t *testing.T, cfg any) {
		t.Helper()
		require.NoError(t, cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), cfg, nil))
	}
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"vaultd", func(t *testing.T) {
			var c config.Vaultd
			parse(t, &c)
			assert.Equal(t, []string{"0.0.0.0:8080", "0.0.0.0:9090", "/etc/obol/tls/vaultd.pem", "/etc/obol/tls/vaultd-key.pem", "/etc/obol/tls/ca.pem"}, []string{c.HTTPAddr, c.GRPCAddr, c.TLSCert, c.TLSKey, c.ClientCA})
			assert.Equal(t, env["OBOL_VAULT_POSTGRES_URL"], c.PostgresURL)
			assert.Equal(t, env["OBOL_CVC_REDIS_URL"], c.RedisURL)
			assert.Equal(t, env["OBOL_AUTHLIMIT_REDIS_URL"], c.AuthLimitRedisURL)
			assert.Equal(t, "/etc/obol/tls/vault-ca.pem", c.CACertFile)
			assert.True(t, c.HTTPTLS)
		}},
		{"gatewayd", func(t *testing.T) {
			var c config.Gatewayd
			parse(t, &c)
			assert.Equal(t, []string{"0.0.0.0:8083", "0.0.0.0:9093", "/etc/obol/tls/gatewayd.pem", "/etc/obol/tls/gatewayd-key.pem"}, []string{c.HTTPAddr, c.GRPCAddr, c.TLSCert, c.TLSKey})
			assert.Equal(t, env["OBOL_GATEWAY_POSTGRES_URL"], c.PostgresURL)
			assert.Equal(t, env["OBOL_AUTHLIMIT_REDIS_URL"], c.RedisURL)
			assert.Equal(t, []string{"vaultd.internal:9090", "riskd.internal:9091", "ledgerd.internal:9092", "eventsd.internal:9094"}, []string{c.VaultAddr, c.RiskAddr, c.LedgerAddr, c.EventsAddr})
			assert.Equal(t, []string{env["OBOL_RISK_TOKEN"], env["OBOL_LEDGER_TOKEN"], env["OBOL_EVENTS_TOKEN"]}, []string{c.RiskToken, c.LedgerToken, c.EventsToken})
			assert.True(t, c.TLSServices)
		}},
		{"riskd", func(t *testing.T) {
			var c config.Riskd
			parse(t, &c)
			assert.Equal(t, []string{"0.0.0.0:8081", "0.0.0.0:9091", "/etc/obol/tls/riskd.pem", "/etc/obol/tls/riskd-key.pem", "/etc/obol/tls/ca.pem"}, []string{c.HTTPAddr, c.GRPCAddr, c.TLSCert, c.TLSKey, c.ClientCA})
			assert.Equal(t, env["OBOL_RISK_REDIS_URL"], c.RedisURL)
			assert.Equal(t, env["OBOL_RISK_STATE_REDIS_URL"], c.StateRedisURL)
			assert.Equal(t, env["OBOL_RISK_TOKEN"], c.Token)
		}},
		{"ledgerd", func(t *testing.T) {
			var c config.Ledgerd
			parse(t, &c)
			assert.Equal(t, []string{"0.0.0.0:8082", "0.0.0.0:9092", "/etc/obol/tls/ledgerd.pem", "/etc/obol/tls/ledgerd-key.pem", "/etc/obol/tls/ca.pem"}, []string{c.HTTPAddr, c.GRPCAddr, c.TLSCert, c.TLSKey, c.ClientCA})
			assert.Equal(t, env["OBOL_LEDGER_POSTGRES_URL"], c.PostgresURL)
			assert.Equal(t, env["OBOL_LEDGER_TOKEN"], c.Token)
			assert.Equal(t, "eventsd.internal:9094", c.EventsAddr)
		}},
		{"eventsd", func(t *testing.T) {
			var c config.Eventsd
			parse(t, &c)
			assert.Equal(t, []string{"0.0.0.0:8084", "0.0.0.0:9094", "/etc/obol/tls/eventsd.pem", "/etc/obol/tls/eventsd-key.pem", ""}, []string{c.HTTPAddr, c.GRPCAddr, c.TLSCert, c.TLSKey, c.ClientCA})
			assert.Equal(t, env["OBOL_EVENTS_POSTGRES_URL"], c.PostgresURL)
			assert.Equal(t, env["OBOL_EVENTS_TOKEN"], c.Token)
		}},
		{"obol verbs", func(t *testing.T) {
			var v config.VaultDB
			parse(t, &v)
			assert.Equal(t, env["OBOL_VAULT_POSTGRES_URL"], v.PostgresURL, "merchants create reads the vault's database")
			var l config.LedgerClient
			parse(t, &l)
			assert.Equal(t, "ledgerd.internal:9092", l.LedgerAddr)
			var a config.AuditVerify
			parse(t, &a)
			assert.Equal(t, []string{"https://vault.internal:8200", "/etc/obol/tls/vault-ca.pem"}, []string{a.VaultAddr, a.VaultCACert})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

// TestVaultCAEverywhere: every binary and verb that talks to HashiCorp
// Vault takes --vault-cacert, OBOL_VAULT_CACERT and VAULT_CACERT (and
// OBOL_VAULT_ADDR with VAULT_ADDR), Obol's variable first.
func TestVaultCAEverywhere(t *testing.T) {
	for _, cfg := range []any{&config.Vaultd{}, &config.Keys{}, &config.VaultSetup{}, &config.AuditVerify{}} {
		t.Run(fmt.Sprintf("%T", cfg), func(t *testing.T) {
			byVar := map[string]*cli.Setting{}
			for _, s := range cli.Settings(cfg) {
				byVar[s.Var()] = s
			}
			require.Contains(t, byVar, "OBOL_VAULT_CACERT")
			assert.Equal(t, []string{"OBOL_VAULT_CACERT", "VAULT_CACERT"}, byVar["OBOL_VAULT_CACERT"].Env)
			assert.Equal(t, "vault-cacert", byVar["OBOL_VAULT_CACERT"].Flag)
			require.Contains(t, byVar, "OBOL_VAULT_ADDR")
			assert.Equal(t, []string{"OBOL_VAULT_ADDR", "VAULT_ADDR"}, byVar["OBOL_VAULT_ADDR"].Env)
			require.Contains(t, byVar, "OBOL_VAULT_TOKEN")
			assert.Equal(t, []string{"OBOL_VAULT_TOKEN", "VAULT_TOKEN"}, byVar["OBOL_VAULT_TOKEN"].Env)
		})
	}
	t.Run("VAULT_CACERT honoured", func(t *testing.T) {
		t.Setenv("VAULT_CACERT", "/etc/vault-ca.pem")
		var c config.AuditVerify
		require.NoError(t, cli.Parse(pflag.NewFlagSet("t", pflag.ContinueOnError), &c, nil))
		assert.Equal(t, "/etc/vault-ca.pem", c.VaultCACert)
	})
}

// TestDatabaseSettingsNameTheirDatabase: every database URL's doc says
// whose database it is (the vault's, the gateway's, the ledger's, the
// events').
func TestDatabaseSettingsNameTheirDatabase(t *testing.T) {
	whose := map[string]string{"OBOL_VAULT_POSTGRES_URL": "the vault's database", "OBOL_GATEWAY_POSTGRES_URL": "the gateway's database", "OBOL_LEDGER_POSTGRES_URL": "the ledger's database", "OBOL_EVENTS_POSTGRES_URL": "the events database"}
	n := 0
	for _, b := range config.Binaries {
		for _, s := range cli.Settings(b.Config) {
			if !strings.Contains(s.Form, "postgres://") {
				continue
			}
			n++
			require.Contains(t, whose, s.Var(), "%s: %s", b.Name, s.Var())
			assert.True(t, strings.HasPrefix(s.Doc, whose[s.Var()]), "%s --%s: %q", b.Name, s.Flag, s.Doc)
		}
	}
	assert.GreaterOrEqual(t, n, 9)
}

// TestDocsNameReadVariables: every OBOL_* variable the docs name is one a
// binary reads (a renamed variable left in a doc would be refused at
// start), except the test harness's, a prefix (OBOL_VAULTD_...) and the
// former names on a line that says they are no longer read.
func TestDocsNameReadVariables(t *testing.T) {
	known := config.Known()
	re := regexp.MustCompile(`OBOL_[A-Z0-9_]*[A-Z0-9]`)
	for _, doc := range []string{"README.md", "SECURITY.md", "ARCHITECTURE.md", "deploy/kubernetes/README.md", "deploy/images/README.md", "deploy/topology/README.md", "deploy/PKI.md", "deploy/obol.env.example"} {
		t.Run(doc, func(t *testing.T) {
			b, err := os.ReadFile("../../../" + doc)
			require.NoError(t, err)
			text := string(b)
			for _, m := range re.FindAllStringIndex(text, -1) {
				v := text[m[0]:m[1]]
				if m[1] < len(text) && text[m[1]] == '_' {
					continue // a prefix, e.g. OBOL_GATEWAYD_…
				}
				lineStart := strings.LastIndex(text[:m[0]], "\n") + 1
				lineEnd := strings.Index(text[m[1]:], "\n")
				if lineEnd < 0 {
					lineEnd = len(text) - m[1]
				}
				if strings.Contains(text[lineStart:m[1]+lineEnd], "no longer read") {
					continue
				}
				if slices.ContainsFunc(config.IgnoredPrefixes, func(p string) bool { return strings.HasPrefix(v, p) }) {
					continue
				}
				assert.True(t, known[v], "%s names %s, which no binary reads", doc, v)
			}
		})
	}
}
