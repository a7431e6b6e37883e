package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// TestServesCounters: the simulator binary counts at the acquirer, on
// /metrics and /v1/stats, what it was asked.
func TestServesCounters(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--addr", addr, "--pki-dir", t.TempDir()}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("acquirer-sim did not stop")
		}
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the dev certificate of a test
	do := func(method, path, body, key string) (int, string) {
		req, err := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.NoError(t, testenv.WaitFor(15*time.Second, func() error {
		if st, b := do("GET", "/v1/stats", "", ""); st != 200 {
			return errString(b)
		}
		return nil
	}))
	payment := `{"amount":1000,"currency":"USD","card":{"number":"4242424242424242","exp_month":12,"exp_year":` + strconv.Itoa(time.Now().Year()+2) + `,"cvc":"123"}}`
	for range 3 {
		st, b := do("POST", "/v1/authorizations", payment, "key-1")
		require.Equal(t, 200, st, b)
	}
	_, stats := do("GET", "/v1/stats", "", "")
	assert.Contains(t, stats, `"key-1":2`)
	st, metrics := do("GET", "/metrics", "", "")
	require.Equal(t, 200, st)
	assert.Contains(t, metrics, `obol_acquirer_sim_requests_total{operation="authorization",outcome="approved"} 3`)
	assert.Contains(t, metrics, `obol_acquirer_sim_idempotency_total{operation="authorization",result="first"} 1`)
	assert.Contains(t, metrics, `obol_acquirer_sim_idempotency_total{operation="authorization",result="replayed"} 2`)
	assert.NotContains(t, metrics+stats, "4242424242424242")
}

type errString string

func (e errString) Error() string { return string(e) }
