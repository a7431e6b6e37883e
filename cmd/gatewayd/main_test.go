package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	"github.com/obolpay/obol/vault/service"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStartFailsClearly: gatewayd refuses a bad configuration at start,
// with a message that says what to fix, before it opens anything.
func TestStartFailsClearly(t *testing.T) {
	dir := t.TempDir()
	pki, err := devpki.Ensure(dir)
	require.NoError(t, err)
	_, err = pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	require.NoError(t, err)
	badRoutes := filepath.Join(dir, "routes.yaml")
	require.NoError(t, os.WriteFile(badRoutes, []byte("routes:\n  - name: acme\n    host: https://api.acme.example\n"), 0o600))
	certs := []string{"--gateway-cert", filepath.Join(dir, "gatewayd.pem"), "--gateway-key", filepath.Join(dir, "gatewayd-key.pem"), "--ca", filepath.Join(dir, devpki.CACert)}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no client certificate", nil, nil, "--gateway-cert, --gateway-key and --ca are required"},
		{"no risk token", certs, nil, "riskd's address and token are required"},
		{"bad merchant acquirers", append([]string{"--merchant-acquirers", "mer_a"}, certs...), nil, "--merchant-acquirers: the value does not parse; want merchant=connector pairs"},
		{"bad route file", append([]string{"--routes", badRoutes}, certs...), map[string]string{"OBOL_RISK_TOKEN": "r", "OBOL_LEDGER_TOKEN": "l"}, "routes[0] (acme): host \"https://api.acme.example\": give the bare host"},
		{"missing route file", append([]string{"--routes", filepath.Join(dir, "nope.yaml")}, certs...), map[string]string{"OBOL_RISK_TOKEN": "r", "OBOL_LEDGER_TOKEN": "l"}, "route file"},
		{"no connector", certs, map[string]string{"OBOL_RISK_TOKEN": "r", "OBOL_LEDGER_TOKEN": "l"}, "no acquirer connector is configured"},
		{"no database", append([]string{"--simulator-url", "https://127.0.0.1:8443"}, certs...), map[string]string{"OBOL_RISK_TOKEN": "r", "OBOL_LEDGER_TOKEN": "l"}, "a gateway database is required"},
		{"plain http to stripe", append([]string{"--postgres-url", "postgres://127.0.0.1:1/x", "--stripe-url", "http://api.stripe.com"}, certs...),
			map[string]string{"OBOL_RISK_TOKEN": "r", "OBOL_LEDGER_TOKEN": "l", "OBOL_STRIPE_SECRET_KEY": "sk_test_x"}, "card data goes over https only"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"OBOL_RISK_TOKEN", "OBOL_LEDGER_TOKEN", "OBOL_STRIPE_SECRET_KEY"} {
				t.Setenv(k, tt.env[k])
			}
			require.ErrorContains(t, run(context.Background(), tt.args), tt.want)
		})
	}
}

// TestListenerMatrix: gatewayd's REST and gRPC listeners (merchants' secret
// keys) refuse plaintext beyond loopback unless a TLS-terminating proxy is
// declared; loopback, TLS and a declared proxy serve.
func TestListenerMatrix(t *testing.T) {
	dir := t.TempDir()
	pki, err := devpki.Ensure(dir)
	require.NoError(t, err)
	_, err = pki.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	require.NoError(t, err)
	d := clitest.Daemon{Vars: "OBOL_GATEWAYD_", Run: run, Args: []string{"--gateway-cert", filepath.Join(dir, "gatewayd.pem"), "--gateway-key", filepath.Join(dir, "gatewayd-key.pem"), "--ca", filepath.Join(dir, devpki.CACert),
		"--simulator-url", "https://127.0.0.1:1"}}
	if !testing.Short() {
		d.Args = append(d.Args, "--postgres-url", testenv.SharedPostgres(t).NewDatabase(t, "gateway", paypg.MigrateURL), "--redis-url", testenv.SharedRedis(t).URL)
		d.Serving = true
	}
	t.Setenv("OBOL_RISK_TOKEN", "r")
	t.Setenv("OBOL_LEDGER_TOKEN", "l")
	clitest.EdgeMatrix(t, d, dir)
}
