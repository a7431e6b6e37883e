package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/testenv"
)

const edgePAN = "4242424242424242"

var (
	ledgerRESTRe = regexp.MustCompile(`ledger REST http://(\S+)`)
	acquirerRe   = regexp.MustCompile(`acquirer  https://(\S+)`)
	// acquirerAddr is the simulator's address of the last startDevCapturing.
	acquirerAddr string
)

// startDevCapturing runs `obol dev` on free loopback ports with its logs
// captured, and returns the REST address of each daemon.
func startDevCapturing(t *testing.T) (addrs map[string]string, logs *testenv.SyncBuffer, secretKey string) {
	t.Helper()
	return startDevCapturingIn(t, filepath.Join(t.TempDir(), ".obol"))
}

// startDevCapturingIn is startDevCapturing with the data dir dir (a test
// that scans what dev stored there).
func startDevCapturingIn(t *testing.T, dir string) (addrs map[string]string, logs *testenv.SyncBuffer, secretKey string) {
	t.Helper()
	t.Setenv("OBOL_LEDGER_SETTINGS", "")
	logs = &testenv.SyncBuffer{}
	prev := cli.LogOutput
	cli.LogOutput = logs
	out := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--risk-http-addr", "127.0.0.1:0", "--risk-grpc-addr", "127.0.0.1:0", "--ledger-http-addr", "127.0.0.1:0", "--ledger-grpc-addr", "127.0.0.1:0", "--events-http-addr", "127.0.0.1:0", "--events-grpc-addr", "127.0.0.1:0", "--gateway-http-addr", "127.0.0.1:0", "--gateway-grpc-addr", "127.0.0.1:0",
			"--simulator-addr", "127.0.0.1:0", "--demo-addr", "", "--log-format", "json"}, out)
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
		cli.LogOutput = prev
	})
	res := map[string]*regexp.Regexp{"vault": restRe, "risk": riskRe, "gateway": payRe, "ledger": ledgerRESTRe}
	addrs = map[string]string{}
	require.NoError(t, testenv.WaitFor(30*time.Second, func() error {
		for name, re := range res {
			m := re.FindStringSubmatch(out.String())
			if m == nil {
				return errors.New("no " + name + " address printed yet")
			}
			addrs[name] = m[1]
		}
		return nil
	}), "%s", out)
	if m := acquirerRe.FindStringSubmatch(out.String()); m != nil {
		acquirerAddr = m[1]
	}
	var sk string
	if m := regexp.MustCompile(`secret key\s+(sk_test_\S+)`).FindStringSubmatch(out.String()); m != nil {
		sk = m[1]
	}
	require.NotEmpty(t, sk, "%s", out)
	return addrs, logs, sk
}

func send(t *testing.T, method, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestDevHostileRequestsMetricsAndLogs sends, to each daemon's REST
// listener, a card number as the HTTP method, card numbers in unknown and
// templated paths and in the query, and 300 random paths, then scrapes each
// /metrics: the request series stay bounded (labels are route templates,
// standard methods and "other") and the leak scanner finds no card number
// in the metrics, the answers or the captured logs.
func TestDevHostileRequestsMetricsAndLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	addrs, logs, _ := startDevCapturing(t)
	scan := testenv.NewLeakScanner()
	scan.AddCard(edgePAN, "")
	hostile := []struct{ method, path string }{
		{edgePAN, "/v1/tokens"},
		{edgePAN, "/v1/payments"},
		{edgePAN, "/healthz"},
		{edgePAN, "/" + edgePAN},
		{http.MethodGet, "/v1/" + edgePAN},
		{http.MethodGet, "/v1/tokens/" + edgePAN},
		{http.MethodGet, "/v1/payments/" + edgePAN},
		{http.MethodGet, "/v1/ledger/accounts/" + edgePAN + "/entries?page_size=" + edgePAN},
		{http.MethodGet, "/v1/risk/lists/" + edgePAN},
		{http.MethodPost, "/v1/" + edgePAN + "/a/b/c/d"},
		{http.MethodGet, "/4242-4242-4242-4242"},
		{http.MethodGet, "/v1/tokens?number=" + edgePAN},
		{http.MethodPost, "/v1/forward?card=" + edgePAN},
		{http.MethodGet, "/nothing?pan=" + edgePAN},
	}
	for name, addr := range addrs {
		t.Run(name, func(t *testing.T) {
			base := "http://" + addr
			for _, h := range hostile {
				_, _, body := send(t, h.method, base+h.path)
				scan.Scan(name+" answer "+h.path[:min(len(h.path), 12)], []byte(body))
			}
			for range 300 {
				b := make([]byte, 8)
				_, _ = rand.Read(b)
				send(t, http.MethodGet, fmt.Sprintf("%s/v1/%s/%x", base, hex.EncodeToString(b), b[:2]))
			}
			_, _, m := send(t, http.MethodGet, base+"/metrics")
			scan.Scan(name+" metrics", []byte(m))
			var reqSeries []string
			for _, l := range strings.Split(m, "\n") {
				if strings.HasPrefix(l, "obol_") && strings.Contains(l, "_requests_total{") {
					reqSeries = append(reqSeries, l)
				}
			}
			// 314 hostile requests; the label space is {known methods,
			// other} x {templates, other} x codes: a few dozen at most.
			assert.LessOrEqual(t, len(reqSeries), 40, "request series:\n%s", strings.Join(reqSeries, "\n"))
			assert.Contains(t, m, `method="other other"`)
			assert.Contains(t, m, `method="GET other"`)
		})
	}
	scan.Scan("logs", logs.Bytes())
	hits, summary := scan.Report()
	t.Log(summary)
	assert.Empty(t, hits)
	assert.Contains(t, logs.String(), `"route":"other"`, "the requests were logged (by label)")
}

// TestDevFailedAuthLimited: obol dev limits failed API keys per client
// address on vaultd's and gatewayd's REST (in-process counters): after 20
// failures, 429 rate_limited with Retry-After, even for the right key, and
// the refusals are counted in /metrics.
func TestDevFailedAuthLimited(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	addrs, _, sk := startDevCapturing(t)
	for _, c := range []struct{ name, path, metric string }{
		{"vault", "/v1/tokens/tok_doesnotexist", "obol_vault_auth_rate_limited_total"},
		{"gateway", "/v1/payments/pay_doesnotexist", "obol_gateway_auth_rate_limited_total"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := "http://" + addrs[c.name]
			code, _, _ := send(t, http.MethodGet, base+c.path, "Authorization", "Bearer "+sk)
			require.NotEqual(t, 401, code, "the right key authenticates")
			for i := range 20 {
				code, _, body := send(t, http.MethodGet, base+c.path, "Authorization", fmt.Sprintf("Bearer sk_test_wrong%02dwrongwrongwrong", i))
				require.Equal(t, 401, code, body)
			}
			code, hdr, body := send(t, http.MethodGet, base+c.path, "Authorization", "Bearer "+sk)
			assert.Equal(t, 429, code)
			assert.Contains(t, body, `"code":"rate_limited"`)
			assert.NotEmpty(t, hdr.Get("Retry-After"))
			_, _, m := send(t, http.MethodGet, base+"/metrics")
			assert.Contains(t, m, c.metric+`{scope="address",transport="http"} 1`)
		})
	}
}

// TestDevLoopbackOnly: obol dev (plaintext) refuses any listen address
// beyond loopback, naming the flag.
func TestDevLoopbackOnly(t *testing.T) {
	tests := []struct{ name, flag, addr string }{
		{"vault REST everywhere", "--http-addr", "0.0.0.0:0"},
		{"gateway REST on all interfaces", "--gateway-http-addr", ":0"},
		{"ledger gRPC on a name", "--ledger-grpc-addr", "ledger.example:9092"},
		{"demo shop on all interfaces", "--demo-addr", "0.0.0.0:0"},
		{"demo shop on all interfaces, v6", "--demo-addr", "[::]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), []string{"dev", "--data-dir", t.TempDir(), tt.flag, tt.addr}, io.Discard)
			require.ErrorContains(t, err, tt.flag+" "+tt.addr+": obol dev listens on loopback only")
		})
	}
}

// TestDevSimulatorTLSErrorScrubbed: a TLS client offering a card number as
// its protocol (openssl s_client -alpn <PAN>) made the acquirer
// simulator's http.Server, which had no ErrorLog, print the protocol list
// raw to the obol dev log; every server now logs through serve.ErrorLog.
func TestDevSimulatorTLSErrorScrubbed(t *testing.T) {
	_, logs, _ := startDevCapturing(t)
	require.NotEmpty(t, acquirerAddr)
	for _, proto := range []string{"4242424242424242", "4242.4242.4242.4242"} {
		c, err := tls.Dial("tcp", acquirerAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}}) //nolint:gosec // the handshake is meant to fail
		if err == nil {
			c.Close()
		}
	}
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if strings.Count(logs.String(), "TLS handshake error") < 2 {
			return errors.New("no handshake errors logged yet")
		}
		return nil
	}), "%s", logs)
	scan := testenv.NewLeakScanner()
	scan.AddCard("4242424242424242", "")
	scan.Scan("logs", logs.Bytes())
	hits, _ := scan.Report()
	assert.Empty(t, hits, "%s", logs)
	assert.NotContains(t, logs.String(), "4242.4242")
}
