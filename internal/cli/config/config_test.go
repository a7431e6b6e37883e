package config_test

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

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

func TestWarnUnknownNamesOnlyTheVariables(t *testing.T) {
	t.Setenv("OBOL_CVC_TLL", "s3cret-value")
	var b bytes.Buffer
	config.WarnUnknown(slog.New(slog.NewTextHandler(&b, nil)))
	assert.Contains(t, b.String(), "level=WARN")
	assert.Contains(t, b.String(), "OBOL_CVC_TLL")
	assert.NotContains(t, b.String(), "s3cret-value", "values are never logged")
}
