package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/devpki"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRunFromEnvironment starts vaultd exactly as an operator would: every
// setting from OBOL_* variables, certificates from files; it serves, reports
// ready, and shuts down cleanly on cancel.
func TestRunFromEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Vault, PostgreSQL and Redis")
	}
	v, pg, rd := testenv.SharedVault(t), testenv.SharedPostgres(t), testenv.SharedRedis(t)
	admin, err := transit.New(transit.Config{Address: v.Addr, Token: v.Token, KeyName: "vaultd-main-kek", FingerprintPath: "secret/data/obol/vaultd-main-fp"})
	require.NoError(t, err)
	_, err = admin.Setup(context.Background(), transit.SetupOptions{})
	require.NoError(t, err)
	pkiDir := t.TempDir()
	_, err = devpki.Ensure(pkiDir)
	require.NoError(t, err)
	port := testenv.FreePort(t)
	env := map[string]string{
		"OBOL_VAULT_ADDR": v.Addr, "OBOL_VAULT_TOKEN": v.Token, "OBOL_TRANSIT_KEY": "vaultd-main-kek",
		"OBOL_FINGERPRINT_PATH":   "secret/data/obol/vaultd-main-fp",
		"OBOL_VAULT_POSTGRES_URL": pg.NewDatabase(t, "vault", postgres.MigrateURL), "OBOL_CVC_REDIS_URL": rd.URL,
		"OBOL_VAULTD_HTTP_ADDR": "127.0.0.1:" + itoa(port), "OBOL_VAULTD_GRPC_ADDR": "127.0.0.1:0",
		"OBOL_VAULTD_TLS_CERT": filepath.Join(pkiDir, devpki.ServerCert), "OBOL_VAULTD_TLS_KEY": filepath.Join(pkiDir, devpki.ServerKey),
		"OBOL_VAULTD_CLIENT_CA": filepath.Join(pkiDir, devpki.CACert), "OBOL_LOG_FORMAT": "json",
	}
	for k, val := range env {
		t.Setenv(k, val)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil) }()
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		select {
		case err := <-done:
			require.FailNow(t, "vaultd exited", "%v", err)
		default:
		}
		resp, err := http.Get("http://127.0.0.1:" + itoa(port) + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return errString(string(b))
		}
		return nil
	}))
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "shutdown")
	case <-time.After(15 * time.Second):
		require.FailNow(t, "vaultd did not shut down")
	}
	t.Run("missing settings fail with a message naming them", func(t *testing.T) {
		t.Setenv("OBOL_CVC_REDIS_URL", "")
		require.ErrorContains(t, run(context.Background(), nil), "OBOL_CVC_REDIS_URL")
	})
}

type errString string

func (e errString) Error() string { return string(e) }

func itoa(n int) string { return strconv.Itoa(n) }

// TestListenerMatrix: vaultd's card-accepting REST listener refuses
// plaintext beyond loopback unless a TLS-terminating proxy is declared;
// loopback, TLS and a declared proxy serve (those need Vault).
func TestListenerMatrix(t *testing.T) {
	pkiDir := t.TempDir()
	_, err := devpki.Ensure(pkiDir)
	require.NoError(t, err)
	d := clitest.Daemon{Vars: "OBOL_VAULTD_", Run: run, GRPCAlwaysTLS: true, Args: []string{"--tls-cert", filepath.Join(pkiDir, devpki.ServerCert), "--tls-key", filepath.Join(pkiDir, devpki.ServerKey), "--client-ca", filepath.Join(pkiDir, devpki.CACert)}}
	if !testing.Short() {
		v, pg, rd := testenv.SharedVault(t), testenv.SharedPostgres(t), testenv.SharedRedis(t)
		admin, err := transit.New(transit.Config{Address: v.Addr, Token: v.Token, KeyName: "vaultd-matrix-kek", FingerprintPath: "secret/data/obol/vaultd-matrix-fp"})
		require.NoError(t, err)
		_, err = admin.Setup(context.Background(), transit.SetupOptions{})
		require.NoError(t, err)
		t.Setenv("OBOL_VAULT_TOKEN", v.Token)
		d.Args = append(d.Args, "--vault-addr", v.Addr, "--transit-key", "vaultd-matrix-kek", "--fingerprint-path", "secret/data/obol/vaultd-matrix-fp",
			"--postgres-url", pg.NewDatabase(t, "vault", postgres.MigrateURL), "--redis-url", rd.URL)
		d.Serving = true
	}
	clitest.EdgeMatrix(t, d, pkiDir)
}
