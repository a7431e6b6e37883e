package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/devpki"
)

// TestSimulatorTrustsSystemRoots: the simulator connector trusts the
// services' CA (--ca) and the system's roots, SSL_CERT_DIR included: the
// dev overlay adds the acquirer simulator's CA that way. It trusted --ca
// only. The system roots are read once per process, so each case runs in
// a child process with its SSL_CERT_DIR.
func TestSimulatorTrustsSystemRoots(t *testing.T) {
	if dir := os.Getenv("OBOL_TEST_SIM_TLS_CA"); dir != "" {
		simulatorTLSChild(t, dir)
		return
	}
	services, err := devpki.Ensure(filepath.Join(t.TempDir(), "services"))
	require.NoError(t, err)
	sim, err := devpki.Ensure(filepath.Join(t.TempDir(), "sim")) // another CA
	require.NoError(t, err)
	certDir := t.TempDir()
	caPEM, err := os.ReadFile(filepath.Join(sim.Dir, devpki.CACert))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(certDir, "sim-ca.pem"), caPEM, 0o600))

	cases := []struct {
		name, certDir string
		trusted       bool
	}{
		{"simulator CA in SSL_CERT_DIR", certDir, true},
		{"simulator CA nowhere", t.TempDir(), false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSimulatorTrustsSystemRoots$", "-test.count=1")
			cmd.Env = append(os.Environ(), "OBOL_TEST_SIM_TLS_CA="+filepath.Join(services.Dir, devpki.CACert), "OBOL_TEST_SIM_TLS_SERVER="+sim.Dir, "SSL_CERT_DIR="+tt.certDir, "SSL_CERT_FILE=/nonexistent")
			if !tt.trusted {
				cmd.Env = append(cmd.Env, "OBOL_TEST_SIM_TLS_REFUSED=1")
			}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), "PASS")
		})
	}
}

// simulatorTLSChild dials a server with the simulator's certificate using
// simulatorTLS(--ca) and checks the outcome the parent expects.
func simulatorTLSChild(t *testing.T, ca string) {
	sim, err := devpki.Ensure(os.Getenv("OBOL_TEST_SIM_TLS_SERVER"))
	require.NoError(t, err)
	srvTLS, err := sim.ServerTLS()
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = srvTLS
	srv.StartTLS()
	defer srv.Close()
	cfg, err := simulatorTLS(ca)
	require.NoError(t, err)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(srv.URL)
	if os.Getenv("OBOL_TEST_SIM_TLS_REFUSED") != "" {
		require.Error(t, err, "a simulator signed by no trusted CA is refused")
		return
	}
	require.NoError(t, err, "the simulator's CA from SSL_CERT_DIR is trusted")
	resp.Body.Close()
}
