package vaultd_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/obolpay/obol/internal/testenv"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/vaultd"
)

// TestEmbeddedDefault runs the `obol dev` stack (local keyring, SQLite,
// in-process CVC store): first start creates a merchant and writes its
// credentials 0600; tokens survive a restart; the SQLite files, keyring and
// logs hold no PAN.
func TestEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	logs := &testenv.SyncBuffer{}
	start := func() *vaultd.Embedded {
		e, err := vaultd.StartEmbedded(context.Background(), vaultd.EmbeddedConfig{DataDir: dir, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(logs, nil))})
		require.NoError(t, err)
		return e
	}
	serve := func(e *vaultd.Embedded) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Serve(ctx) }()
		return func() {
			cancel()
			err := <-done
			assert.NoErrorf(t, err, "Serve: %v", err)
			e.Close()
		}
	}
	e := start()
	require.Truef(t, e.CreatedMerchant, "first start did not create a dev merchant")
	credPath := filepath.Join(dir, vaultd.CredentialsFile)
	st, err := os.Stat(credPath)
	require.NoErrorf(t, err, "credentials file: %v mode %v", err, st.Mode())
	require.EqualValuesf(t, 0o600, st.Mode().Perm(), "credentials file: %v mode %v", err, st.Mode())
	var creds map[string]string
	b, _ := os.ReadFile(credPath)
	err = json.Unmarshal(b, &creds)
	require.NoErrorf(t, err, "credentials: %s", b)
	require.Truef(t, strings.HasPrefix(creds["secret_key"], "sk_test_"), "credentials: %s", b)
	require.Truef(t, strings.HasPrefix(creds["publishable_key"], "pk_test_"), "credentials: %s", b)
	require.Truef(t, strings.HasPrefix(creds["merchant_id"], "mer_"), "credentials: %s", b)
	stop := serve(e)
	cardJSON := `{"card":{"number":"3782 822463 10005","exp_month":12,"exp_year":` + itoa(expYear) + `,"cvc":"7373","holder_name":"Grace Hopper"}}`
	leaks.AddCard("378282246310005", "7373")
	req, _ := http.NewRequest("POST", "http://"+e.Server.HTTPAddr()+"/v1/tokens", strings.NewReader(cardJSON))
	req.Header.Set("Authorization", "Bearer "+creds["secret_key"])
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tok struct{ Token string }
	err = json.Unmarshal(raw, &tok)
	require.NoErrorf(t, err, "tokenize: %d %s", resp.StatusCode, raw)
	require.EqualValuesf(t, 200, resp.StatusCode, "tokenize: %d %s", resp.StatusCode, raw)
	stop()

	e = start()
	require.Falsef(t, e.CreatedMerchant, "restart created a new merchant")
	require.EqualValuesf(t, creds["secret_key"], e.Credentials.SecretKey, "restart created a new merchant")
	stop = serve(e)
	defer stop()
	cert, err := e.PKI.ClientCert("gatewayd", service.DefaultGatewayIdentity)
	require.NoError(t, err)
	conn, err := grpc.NewClient(e.Server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(e.PKI.ClientTLS(cert))))
	require.NoError(t, err)
	defer conn.Close()
	s := &stack{t: t}
	c, _, err := s.detokenize(vaultv1.NewVaultServiceClient(conn), creds["merchant_id"], tok.Token, false)
	require.NoErrorf(t, err, "detokenize after restart: %v", err)
	require.EqualValuesf(t, "378282246310005", string(c.Number.RevealDigits()), "wrong card after restart")
	require.EqualValuesf(t, "Grace Hopper", c.HolderName, "wrong card after restart")
	c.Wipe()
	// Everything the embedded default wrote to disk, and its logs.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range append(files, more...) {
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() {
			data, _ := os.ReadFile(f)
			leaks.Scan("sqlite and data dir", data)
		}
	}
	leaks.Scan("logs", logs.Bytes())
	hits, _ := leaks.Report()
	require.Emptyf(t, hits, "leaks: %v", hits)
}

func itoa(n int) string { return strconv.Itoa(n) }
