package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDevMetricsFollowPrometheusConventions runs a payment through obol dev
// (so the payment, vault, risk and ledger series exist), scrapes every
// daemon's /metrics and lints it with promlint, the Go equivalent of
// `promtool check metrics`: counters end in _total, units are base units
// (_seconds, _bytes), names are snake_case, every metric has help text.
func TestDevMetricsFollowPrometheusConventions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	addrs, _, sk := startDevCapturing(t)
	do := func(method, url, body string, hdr ...string) map[string]any {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+sk)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		require.Less(t, resp.StatusCode, 300, "%s %s: %v", method, url, m)
		return m
	}
	tok := do("POST", "http://"+addrs["vault"]+"/v1/tokens", `{"card":{"number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}}`)["token"].(string)
	p := do("POST", "http://"+addrs["gateway"]+"/v1/payments", `{"token":"`+tok+`","amount":2500,"currency":"usd","capture":true}`, "Idempotency-Key", "lint-1")
	require.Equal(t, "captured", p["status"], "%v", p)
	for _, name := range []string{"vault", "gateway", "risk", "ledger"} {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get("http://" + addrs[name] + "/metrics")
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Contains(t, string(body), "obol_"+name+"_requests_total")
			problems, err := promlint.New(bytes.NewReader(body)).Lint()
			require.NoError(t, err)
			for _, pr := range problems {
				assert.Failf(t, "metric naming", "%s: %s", pr.Metric, pr.Text)
			}
		})
	}
}
