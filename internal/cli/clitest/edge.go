// Package clitest runs the listener start-up matrix that every daemon's
// cmd test shares: plaintext beyond loopback refused with a message naming
// the variable, loopback plaintext served, TLS served, a declared
// TLS-terminating proxy served with a loud warning. PAN-free.
package clitest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/internal/testenv"
)

// Daemon is one binary under test.
type Daemon struct {
	// Run is the command's run(ctx, args).
	Run func(ctx context.Context, args []string) error
	// Args are what it needs to start besides its listeners (nil Args and
	// Serving false: only the refusals run, e.g. without Vault).
	Args    []string
	Serving bool
	// GRPCAlwaysTLS: the daemon refuses plaintext gRPC anyway (vaultd).
	GRPCAlwaysTLS bool
	// Vars is the prefix of the daemon's own variables, e.g.
	// "OBOL_GATEWAYD_" (the refusals name them).
	Vars string
}

// EdgeMatrix runs the matrix; pki is a devpki directory (its server
// certificate is valid for 127.0.0.1).
func EdgeMatrix(t *testing.T, d Daemon, pki string) {
	require.NotEmpty(t, d.Vars, "Daemon.Vars names the daemon's variables")
	cert, key := filepath.Join(pki, devpki.ServerCert), filepath.Join(pki, devpki.ServerKey)
	p, err := devpki.Ensure(pki)
	require.NoError(t, err)
	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"plaintext REST beyond loopback refused", []string{"--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0"}, d.Vars + "HTTP_BEHIND_TLS_PROXY"},
		{"plaintext REST on every interface refused", []string{"--http-addr", ":0", "--grpc-addr", "127.0.0.1:0"}, d.Vars + "HTTP_TLS_CERT"},
		{"REST TLS and a declared proxy refused", []string{"--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0", "--http-tls-cert", cert, "--http-tls-key", key, "--http-behind-tls-proxy"}, "choose one"},
		{"REST certificate without its key refused", []string{"--http-tls-cert", cert}, d.Vars + "HTTP_TLS_CERT and " + d.Vars + "HTTP_TLS_KEY (--http-tls-cert, --http-tls-key) must be set together"},
	}
	if !d.GRPCAlwaysTLS {
		refusals = append(refusals, struct {
			name string
			args []string
			want string
		}{"plaintext gRPC beyond loopback refused", []string{"--http-addr", "127.0.0.1:0", "--grpc-addr", "0.0.0.0:0"}, d.Vars + "GRPC_BEHIND_TLS_PROXY"})
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Run(context.Background(), append(append([]string(nil), d.Args...), tt.args...))
			require.ErrorContains(t, err, tt.want)
			if strings.Contains(tt.name, "beyond loopback") || strings.Contains(tt.name, "every interface") {
				assert.True(t, errors.Is(err, serve.ErrPlaintext), "err %v is not ErrPlaintext", err)
			}
		})
	}
	if !d.Serving {
		return
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool(), MinVersion: tls.VersionTLS12}}}
	serving := []struct {
		name     string
		host     string
		args     []string
		scheme   string
		wantLogs string
	}{
		{"loopback plaintext served", "127.0.0.1", nil, "http", ""},
		{"TLS served beyond loopback", "0.0.0.0", []string{"--http-tls-cert", cert, "--http-tls-key", key}, "https", ""},
		{"TLS from the gRPC certificate with --http-tls", "127.0.0.1", []string{"--http-tls", "--tls-cert", cert, "--tls-key", key}, "https", ""},
		{"declared proxy served with a warning", "0.0.0.0", []string{"--http-behind-tls-proxy"}, "http", "PLAINTEXT REST listener: " + d.Vars + "HTTP_BEHIND_TLS_PROXY=true"},
	}
	for _, tt := range serving {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.SyncBuffer{}
			prev := cli.LogOutput
			cli.LogOutput = logs
			defer func() { cli.LogOutput = prev }()
			port := strconv.Itoa(testenv.FreePort(t))
			args := append(append([]string(nil), d.Args...), "--http-addr", tt.host+":"+port, "--grpc-addr", "127.0.0.1:0")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, append(args, tt.args...)) }()
			defer func() {
				cancel()
				assert.NoError(t, <-done)
			}()
			url := tt.scheme + "://127.0.0.1:" + port + "/healthz"
			require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
				select {
				case err := <-done:
					done <- err
					return fmt.Errorf("exited: %w", err)
				default:
				}
				resp, err := tlsClient.Get(url)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %d", resp.StatusCode)
				}
				return nil
			}), "logs:\n%s", logs)
			if tt.scheme == "https" {
				resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
				if err == nil {
					resp.Body.Close()
					assert.NotEqual(t, 200, resp.StatusCode, "plain HTTP is not served next to TLS")
				}
			}
			if tt.wantLogs != "" {
				assert.Contains(t, logs.String(), tt.wantLogs)
			}
		})
	}
}
