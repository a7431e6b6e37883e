package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/ledgerd"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
)

// TestLedgerVerbsWithClientCertificates: a ledgerd started with a client
// CA (OBOL_LEDGERD_CLIENT_CA, --client-ca) refuses a ledger verb without a
// client certificate and serves one that presents it with --client-cert
// and --client-key (or OBOL_CLIENT_CERT and OBOL_CLIENT_KEY); half a
// certificate, or one without TLS, is refused before dialling.
func TestLedgerVerbsWithClientCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts ledgerd on PostgreSQL")
	}
	dir := t.TempDir()
	pki, err := devpki.Ensure(dir)
	require.NoError(t, err)
	_, err = pki.ClientCert("operator", "spiffe://obol.local/operator")
	require.NoError(t, err)
	ca, cert, key := filepath.Join(dir, devpki.CACert), filepath.Join(dir, "operator.pem"), filepath.Join(dir, "operator-key.pem")
	// ledgerd as cmd/ledgerd builds it from --tls-cert, --tls-key and --client-ca.
	grpcTLS, err := cli.ServerTLS(filepath.Join(dir, devpki.ServerCert), filepath.Join(dir, devpki.ServerKey), ca)
	require.NoError(t, err)
	const token = "ledger-mtls-token"
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	in, err := ledgerd.Start(context.Background(), ledgerd.Config{
		PostgresURL: testenv.SharedPostgres(t).NewDatabase(t, "ledger", ledgerpg.MigrateURL),
		GRPCAddr:    addr, HTTPAddr: "127.0.0.1:0", GRPCTLS: grpcTLS, Token: token,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
		in.Close()
	})
	t.Setenv("OBOL_LEDGER_TOKEN", token)
	t.Setenv("OBOL_LEDGER_ADDR", addr)
	base := []string{"ledger", "balances", "--merchant", "mer_mtls", "--data-dir", filepath.Join(dir, "no-dev")}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" : served
	}{
		// With TLS 1.3 the client learns of the refusal after its handshake
		// ends: the alert ("certificate required") or, when its first write
		// races the server's close, a broken pipe or reset. Either way the
		// verb fails as unavailable and nothing is served.
		{"no client certificate: refused by ledgerd", []string{"--ledger-ca", ca}, nil, "certificate required|service_unavailable: .*(broken pipe|connection reset)"},
		{"client certificate by flags", []string{"--ledger-ca", ca, "--client-cert", cert, "--client-key", key}, nil, ""},
		{"client certificate by variables", nil, map[string]string{"OBOL_LEDGER_CA": ca, "OBOL_CLIENT_CERT": cert, "OBOL_CLIENT_KEY": key}, ""},
		{"certificate without its key", []string{"--ledger-ca", ca, "--client-cert", cert}, nil, "--client-cert and --client-key (OBOL_CLIENT_CERT, OBOL_CLIENT_KEY) must be given together"},
		{"certificate without TLS", []string{"--client-cert", cert, "--client-key", key}, nil, "--client-cert (OBOL_CLIENT_CERT) needs TLS: give the daemon's CA with --ledger-ca"},
		{"key that is not the certificate's", []string{"--ledger-ca", ca, "--client-cert", cert, "--client-key", filepath.Join(dir, devpki.ServerKey)}, nil, "--client-cert/--client-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			err := run(context.Background(), append(append([]string{}, base...), tt.args...), &out)
			if tt.wantErr != "" {
				require.Error(t, err)
				if strings.Contains(tt.wantErr, "|") {
					assert.Regexp(t, tt.wantErr, err.Error())
				} else {
					assert.Contains(t, err.Error(), tt.wantErr)
				}
				assert.NotContains(t, err.Error(), token)
				return
			}
			require.NoError(t, err, "output:\n%s", out.String())
			assert.Contains(t, out.String(), "merchant mer_mtls (USD)")
		})
	}
}
