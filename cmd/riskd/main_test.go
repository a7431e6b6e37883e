package main

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestMutualTLS: with a client CA, riskd's gRPC requires a client
// certificate signed by it.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Redis")
	}
	dir := t.TempDir()
	pki, err := devpki.Ensure(dir)
	require.NoError(t, err)
	port := testenv.FreePort(t)
	for k, v := range map[string]string{
		"OBOL_RISK_REDIS_URL": testenv.SharedRedis(t).URL, "OBOL_RISK_TOKEN": "t", "OBOL_RISKD_GRPC_ADDR": "127.0.0.1:" + itoa(port), "OBOL_RISKD_HTTP_ADDR": "127.0.0.1:0",
		"OBOL_RISKD_TLS_CERT": filepath.Join(dir, devpki.ServerCert), "OBOL_RISKD_TLS_KEY": filepath.Join(dir, devpki.ServerKey), "OBOL_RISKD_CLIENT_CA": filepath.Join(dir, devpki.CACert),
	} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done, "riskd")
	}()
	check := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient("127.0.0.1:"+itoa(port), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	cert, err := pki.ClientCert("gatewayd", "spiffe://obol.local/gatewayd")
	require.NoError(t, err)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error { return check(pki.ClientTLS(cert)) }), "with a client certificate")
	noCert := pki.ClientTLS(cert)
	noCert.Certificates = nil
	require.Error(t, check(noCert), "a client without a certificate was served")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestListenerMatrix: riskd's REST and gRPC listeners refuse plaintext
// beyond loopback unless a TLS-terminating proxy is declared; loopback,
// TLS and a declared proxy serve.
func TestListenerMatrix(t *testing.T) {
	d := clitest.Daemon{Vars: "OBOL_RISKD_", Run: run}
	if !testing.Short() {
		d.Args, d.Serving = []string{"--redis-url", testenv.SharedRedis(t).URL}, true
	}
	t.Setenv("OBOL_RISK_TOKEN", "t")
	clitest.EdgeMatrix(t, d, t.TempDir())
}
