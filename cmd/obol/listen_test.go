package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// startDevIn runs obol dev on free ports in a fresh data dir and returns it
// once its addresses are recorded.
func startDevIn(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ".obol")
	t.Setenv("OBOL_LEDGER_SETTINGS", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &testenv.SyncBuffer{}
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--risk-http-addr", "127.0.0.1:0", "--risk-grpc-addr", "127.0.0.1:0", "--ledger-http-addr", "127.0.0.1:0", "--ledger-grpc-addr", "127.0.0.1:0",
			"--events-http-addr", "127.0.0.1:0", "--events-grpc-addr", "127.0.0.1:0", "--gateway-http-addr", "127.0.0.1:0", "--gateway-grpc-addr", "127.0.0.1:0",
			"--simulator-addr", "127.0.0.1:0", "--demo-addr", "", "--log-format", "json"}, out)
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		if devAddress(dir, addrGatewayGRPC) == "" || !strings.Contains(out.String(), "events ") {
			return io.ErrUnexpectedEOF
		}
		return nil
	}), "%s", out)
	return dir
}

// TestListenAndEventsCommands: obol listen registers a loopback endpoint
// in obol dev, verifies and forwards each webhook to --forward-to (headers
// and body unchanged) and deletes the endpoint on exit; obol events
// list/get/resend read and redeliver through the gateway.
func TestListenAndEventsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	dir := startDevIn(t)
	var mu sync.Mutex
	type fwd struct {
		id  string
		err error
	}
	var got []fwd
	var secret string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fwd{r.Header.Get("webhook-id"), verifyWebhook(secret, r, b)})
	}))
	defer target.Close()

	lctx, stopListen := context.WithCancel(context.Background())
	lout := &testenv.SyncBuffer{}
	ldone := make(chan error, 1)
	go func() {
		ldone <- run(lctx, []string{"listen", "--forward-to", target.URL + "/hook", "--data-dir", dir}, lout)
	}()
	re := regexp.MustCompile(`endpoint (we_\w+) .*\nSigning secret: (whsec_\S+)`)
	var m []string
	require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
		if m = re.FindStringSubmatch(lout.String()); m == nil {
			return io.ErrUnexpectedEOF
		}
		return nil
	}), "%s", lout)
	mu.Lock()
	secret = m[2]
	mu.Unlock()
	sk, err := devCredential(dir, "secret_key")
	require.NoError(t, err)
	gw := devAddress(dir, "payments")
	resp, body := post(t, gw+"/v1/webhook_endpoints/"+m[1]+"/test", `{}`, "Authorization", "Bearer "+sk)
	require.Equal(t, 200, resp.StatusCode, "%s", body)
	evID := regexp.MustCompile(`"id":"(evt_\w+)"`).FindStringSubmatch(string(body))[1]
	waitForwarded := func(n int) {
		require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) < n {
				return io.ErrUnexpectedEOF
			}
			return nil
		}), "%s", lout)
	}
	waitForwarded(1)

	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"events", "list", "--data-dir", dir, "--type", "webhook_endpoint.test"}, &out))
	assert.Contains(t, out.String(), evID)
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"events", "get", evID, "--data-dir", dir}, &out))
	assert.Contains(t, out.String(), `"type": "webhook_endpoint.test"`)
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"events", "resend", evID, "--endpoint", m[1], "--data-dir", dir}, &out))
	assert.Contains(t, out.String(), "pending")
	waitForwarded(2)
	mu.Lock()
	for _, f := range got {
		assert.Equal(t, evID, f.id, "a resend keeps the webhook-id")
		assert.NoError(t, f.err, "forwarded unchanged: the signature still verifies")
	}
	mu.Unlock()
	assert.Contains(t, lout.String(), evID+" webhook_endpoint.test "+m[1]+" -> 200")
	err = run(context.Background(), []string{"events", "resend", evID, "--data-dir", dir}, &out)
	require.ErrorContains(t, err, "--endpoint is required")

	stopListen()
	require.NoError(t, <-ldone)
	code, _, _ := send(t, "GET", gw+"/v1/webhook_endpoints/"+m[1], "Authorization", "Bearer "+sk)
	assert.Equal(t, http.StatusNotFound, code, "obol listen deletes its endpoint on exit")
}
