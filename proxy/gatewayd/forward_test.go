package gatewayd_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/gatewayd"
	"github.com/obolpay/obol/vault/merchants"
)

// upstream is an HTTPS acquirer-like server that records what it received
// and echoes the body back (as careless acquirers do).
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []upReq
}

type upReq struct {
	method, path, body string
	header             http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	release := make(chan struct{})
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/form/slow" {
			<-release // answers only when the test ends
			return
		}
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, upReq{r.Method, r.URL.Path, string(b), r.Header.Clone()})
		u.mu.Unlock()
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Header().Set("X-Echo-Expiry", r.Header.Get("X-Card-Expiry"))
		w.WriteHeader(201)
		_, _ = w.Write(b)
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() { close(release) })
	return u
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.reqs) }
func (u *upstream) last() upReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reqs[len(u.reqs)-1]
}
func (u *upstream) host() string { h, _ := url.Parse(u.srv.URL); return h.Host }

func routeFile(host string) string {
	return routeFileWith(host, "127.0.0.1:1")
}

// routeFileWith adds a route to deadHost, where nothing listens.
func routeFileWith(host, deadHost string) string {
	return `routes:
  - name: acme-charges
    host: ` + host + `
    paths: ["/v1/charges"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
      - json: card.exp_month
        value: "{{token.exp_month}}"
        as: number
      - json: card.exp_year
        value: "{{token.exp_year}}"
        as: number
      - json: card.cvc
        value: "{{token.cvc}}"
      - header: X-Card-Expiry
        value: "{{token.exp_month}}/{{token.exp_year}}"
  - name: acme-form
    host: ` + host + `
    paths: ["/v1/form/*"]
    methods: [POST]
    reveal:
      - form: card[number]
        value: "{{token.number}}"
  - name: partner-only
    host: ` + host + `
    paths: ["/v1/partner"]
    methods: [POST]
    merchants: [mer_someone_else]
    reveal:
      - json: card.number
        value: "{{token.number}}"
  - name: dead
    host: ` + deadHost + `
    paths: ["/v1/form/pay"]
    methods: [POST]
    reveal:
      - form: card[number]
        value: "{{token.number}}"
`
}

// TestForward: the generic proxy through real vaultd (mTLS), with an HTTPS
// upstream: tokens become card data only where the route says, only for the
// allowlisted destination; everything refused never reaches the upstream.
func TestForward(t *testing.T) {
	up := newUpstream(t)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(routes, []byte(routeFile(up.host())), 0o600))
	s := start(t, func(c *gatewayd.Config, _ string) {
		c.RoutesFile = routes
		c.UpstreamTLS = up.srv.Client().Transport.(*http.Transport).TLSClientConfig
		c.RoutesReload = 20 * time.Millisecond
		c.ForwardTimeout = 500 * time.Millisecond
	})
	tok := s.tokenize(t, "4242424242424242", "123")
	// fwdOn takes the test to fail: a subtest's own, on its goroutine.
	fwdOn := func(t *testing.T, dest, body, contentType string, hdr map[string]string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+s.gw+"/v1/forward", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.sk)
		req.Header.Set("Obol-Destination", dest)
		req.Header.Set("Content-Type", contentType)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	fwd := func(dest, body, contentType string, hdr map[string]string) (int, http.Header, string) {
		t.Helper()
		return fwdOn(t, dest, body, contentType, hdr)
	}
	base := "https://" + up.host()
	jsonBody := `{"amount":1000,"card":{"number":"` + tok + `","exp_month":"` + tok + `","exp_year":"` + tok + `","cvc":"` + tok + `"}}`

	// A dry run echoes the destination with card numbers masked.
	st, _, out := fwd(base+"/v1/charges?note=5555555555554444", jsonBody, "application/json", map[string]string{"Obol-Dry-Run": "true", "X-Card-Expiry": tok})
	require.Equal(t, 200, st, "dry run with a card number in the query: %s", out)
	require.NotContains(t, out, "5555555555554444", "dry run with a card number in the query")
	require.Contains(t, out, "************4444", "dry run with a card number in the query")
	// Whatever separates its digits.
	st, _, out = fwd(base+"/v1/charges?note=5555.5555_5555.4444", jsonBody, "application/json", map[string]string{"Obol-Dry-Run": "true", "X-Card-Expiry": tok})
	require.Equal(t, 200, st, "dry run with a dotted card number in the query: %s", digitsOf(out))
	require.NotContains(t, digitsOf(out), "5555555555554444", "dry run with a dotted card number in the query")
	require.Contains(t, out, "****.****_****.4444", "dry run with a dotted card number in the query")
	// Dry run first: it explains and reveals nothing (the CVC stays).
	st, _, out = fwd(base+"/v1/charges", jsonBody, "application/json", map[string]string{"Obol-Dry-Run": "true", "X-Card-Expiry": tok})
	require.Equal(t, 200, st, "dry run: %s", out)
	require.Contains(t, out, `"route":"acme-charges"`, "dry run")
	require.Contains(t, out, `"json:card.number"`, "dry run")
	require.Contains(t, out, `"`+tok+`":"found"`, "dry run")
	require.Equal(t, 0, up.count(), "dry run: the upstream saw requests")

	st, h, out := fwd(base+"/v1/charges", jsonBody, "application/json", map[string]string{"X-Card-Expiry": tok, "Obol-Upstream-Authorization": "Bearer acme-key", "X-Request-Id": "r1"})
	require.Equal(t, 201, st, "forward: %s", out)
	require.Equal(t, 1, up.count(), "forward: %s", out)
	got := up.last()
	require.Equal(t, `{"amount":1000,"card":{"number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}}`, got.body, "upstream body")
	require.Equal(t, "12/2031", got.header.Get("X-Card-Expiry"), "upstream headers: %v", got.header)
	require.Equal(t, "Bearer acme-key", got.header.Get("Authorization"), "upstream headers: %v", got.header)
	require.Equal(t, "r1", got.header.Get("X-Request-Id"), "upstream headers: %v", got.header)
	require.Empty(t, got.header.Get("Obol-Destination"), "upstream headers: %v", got.header)
	// The echoed card number and the echoed CVC are both masked.
	require.NotContains(t, out, "4242424242424242", "merchant got")
	require.Contains(t, out, "************4242", "merchant got")
	require.Contains(t, out, `"cvc":"***"`, "merchant got")
	require.Equal(t, "2", h.Get("Obol-Redacted"), "merchant got: %v %s", h, out)
	require.Equal(t, "acme-charges", h.Get("Obol-Route"), "merchant got: %v %s", h, out)

	// Form reveal (the CVC is gone: used once; the number stays).
	st, _, out = fwd(base+"/v1/form/pay", "amount=5&card%5Bnumber%5D="+tok, "application/x-www-form-urlencoded", nil)
	require.Equal(t, 201, st, "form: %s", out)
	require.Equal(t, "amount=5&card%5Bnumber%5D=4242424242424242", up.last().body, "form: upstream body")
	require.NotContains(t, out, "4242424242424242", "form")
	st, _, out = fwd(base+"/v1/charges", jsonBody, "application/json", map[string]string{"X-Card-Expiry": tok})
	require.Equal(t, 409, st, "second CVC reveal: %s", out)
	require.Contains(t, out, "cvc_unavailable", "second CVC reveal")

	// Upstream failures: nothing listening is a 502, a hung upstream a 504.
	st, _, out = fwd("https://127.0.0.1:1/v1/form/pay", "card%5Bnumber%5D="+tok, "application/x-www-form-urlencoded", nil)
	require.Equal(t, 502, st, "dead upstream: %s", out)
	require.Contains(t, out, "upstream_unavailable", "dead upstream")
	st, _, out = fwd(base+"/v1/form/slow", "card%5Bnumber%5D="+tok, "application/x-www-form-urlencoded", nil)
	require.Equal(t, 504, st, "hung upstream: %s", out)
	require.Contains(t, out, "upstream_timeout", "hung upstream")

	other, err := merchants.Create(context.Background(), s.vaultd().Store, "Other merchant", nil, "test")
	require.NoError(t, err)
	otherTok := func() string {
		sk := s.sk
		s.sk = other.SecretKey
		defer func() { s.sk = sk }()
		return s.tokenize(t, "5555555555554444", "999")
	}()
	calls := up.count()
	refused := []struct {
		name, dest, body, ct, code string
		status                     int
		dryRun                     string
	}{
		{"path not allowed", base + "/v1/refunds", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"host not allowed", "https://evil.example/v1/charges", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"plain http", "http://" + up.host() + "/v1/charges", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"dot segments", base + "/v1/x/../charges", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"a card number in the path", base + "/v1/cards/4242424242424242", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"a card number in the host", "https://4242424242424242.example/v1/charges", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"a card number in the host, dotted", "https://4242.4242.4242.4242/num/x", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"a card number in the host, underscored", "https://4242_4242_4242_4242/num/x", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"no destination", "", jsonBody, "application/json", "field_required", 400, ""},
		{"other merchant's token", base + "/v1/form/pay", "card%5Bnumber%5D=" + otherTok, "application/x-www-form-urlencoded", "token_not_found", 404, ""},
		{"unknown token", base + "/v1/form/pay", "card%5Bnumber%5D=tok_nope", "application/x-www-form-urlencoded", "token_not_found", 404, ""},
		{"token missing", base + "/v1/form/pay", "amount=5", "application/x-www-form-urlencoded", "reveal_field_missing", 400, ""},
		{"a PAN instead of a token", base + "/v1/form/pay", "card%5Bnumber%5D=4242424242424242", "application/x-www-form-urlencoded", "reveal_field_not_token", 400, ""},
		{"broken JSON", base + "/v1/charges", `{"card":`, "application/json", "body_invalid", 400, ""},
		{"unclear dry run", base + "/v1/charges", jsonBody, "application/json", "dry_run_invalid", 400, "maybe"},
		// Destinations: only escapes of unreserved characters; no control
		// or non-ASCII characters (each would otherwise match /v1/form/*).
		{"escaped backslash", base + "/v1/form/pay%5C..%5Cadmin", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"escaped space", base + "/v1/form/a%20b", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"escaped CR LF", base + "/v1/form/a%0D%0AX-Injected:%201", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"escaped slash", base + "/v1/form/a%2F..%2F..%2Fcharges", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"escaped dot segment", base + "/v1/form/%2E%2E/admin", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_not_allowed", 403, ""},
		{"path parameter", base + "/v1/form/..;/admin", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"non-ASCII path", base + "/v1/form/caf\u00e9", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"escaped CR LF in the query", base + "/v1/form/pay?x=%0D%0A", "card%5Bnumber%5D=" + tok, "application/x-www-form-urlencoded", "destination_invalid", 400, ""},
		{"another merchant's route", base + "/v1/partner", jsonBody, "application/json", "destination_not_allowed", 403, ""},
		{"another merchant's route, dry run", base + "/v1/partner", jsonBody, "application/json", "destination_not_allowed", 403, "true"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			st, _, out := fwdOn(t, tt.dest, tt.body, tt.ct, map[string]string{"X-Card-Expiry": tok, "Obol-Dry-Run": tt.dryRun})
			require.Equal(t, tt.status, st, out)
			require.Contains(t, out, `"code":"`+tt.code+`"`)
			require.NotContains(t, out, "4242424242424242", "card data in the error")
			require.NotContains(t, out, "5555555555554444", "card data in the error")
			require.NotContains(t, out, "partner-only", "another merchant's route in the error")
			require.NotContains(t, out, "mer_someone_else", "another merchant's route in the error")
		})
	}
	require.Equal(t, calls, up.count(), "refused requests reached the upstream")
	require.False(t, strings.Contains(s.logs.String(), "partner-only"), "the logs name another merchant's route")

	// Hot reload (the gateway polls the file every 20 ms here): a new route
	// file takes effect; a bad one is refused and the previous routes stay.
	require.NoError(t, os.WriteFile(routes, []byte(strings.Replace(routeFile(up.host()), `"/v1/form/*"`, `"/v1/form/*", "/v2/form/*"`, 1)), 0o600))
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if len(s.gateway.Routes.Table().Routes[1].Paths) != 2 {
			return errors.New("the new route file is not active")
		}
		return nil
	}))
	st, _, out = fwd(base+"/v2/form/pay", "card%5Bnumber%5D="+tok, "application/x-www-form-urlencoded", nil)
	require.Equal(t, 201, st, "after reload: %s", out)
	require.NoError(t, os.WriteFile(routes, []byte("routes:\n  - name: x\n    host: https://nope\n"), 0o600))
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if s.gateway.Routes.Rejected.Load() != 1 {
			return errors.New("the bad route file was not refused")
		}
		return nil
	}))
	st, _, _ = fwd(base+"/v2/form/pay", "card%5Bnumber%5D="+tok, "application/x-www-form-urlencoded", nil)
	require.Equal(t, 201, st, "the previous routes did not stay")
	require.True(t, strings.Contains(s.logs.String(), "route file refused; the previous routes stay active"), "the refused route file was not logged")

	// Metrics: by route and outcome, labels from the route file only.
	resp, err := http.Get("http://" + s.gw + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`obol_gateway_forward_requests_total{outcome="forwarded",route="acme-charges"} 1`,
		`obol_gateway_forward_requests_total{outcome="dry_run",route="acme-charges"} 3`,
		`obol_gateway_forward_requests_total{outcome="forwarded",route="acme-form"} 3`,
		`obol_gateway_forward_requests_total{outcome="upstream_error",route="dead"} 1`,
		`obol_gateway_forward_requests_total{outcome="upstream_error",route="acme-form"} 1`,
		`obol_gateway_forward_requests_total{outcome="refused",route=""} 12`,
		`obol_gateway_forward_requests_total{outcome="destination_invalid",route=""} 7`,
		`obol_gateway_forward_redacted_total 5`,
		`obol_gateway_routes_rejected_total 1`,
	} {
		if !assert.True(t, strings.Contains(string(metrics), want), "metrics lack %s", want) {
			for _, l := range strings.Split(string(metrics), "\n") {
				if strings.HasPrefix(l, "obol_gateway_forward") || strings.HasPrefix(l, "obol_gateway_routes") {
					t.Log(l)
				}
			}
		}
	}
	leaks := testenv.NewLeakScanner()
	leaks.AddCard("4242424242424242", "123")
	leaks.AddCard("5555555555554444", "999")
	leaks.Scan("logs", s.logs.Bytes())
	leaks.Scan("metrics", metrics)
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits, "leaks")
	// Whatever separates its digits (dots, underscores in a host), no log
	// line holds a card number's digits in order.
	for i, l := range strings.Split(s.logs.String(), "\n") {
		for _, pan := range []string{"4242424242424242", "5555555555554444"} {
			// Not NotContains: the failure must not print the line.
			assert.False(t, strings.Contains(digitsOf(l), pan), "log line %d holds a card number's digits (%d bytes)", i, len(l))
		}
	}
}

// digitsOf is s's ASCII digits, in order, everything else dropped.
func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}
