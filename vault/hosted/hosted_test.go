package hosted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/obolpay/obol/internal/apikey"
	"github.com/obolpay/obol/internal/testenv"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/store"
)

// fakeKeys is a unit-test stand-in for the store's key lookups.
type fakeKeys struct {
	keys map[string]store.APIKey
	down bool
}

func (f *fakeKeys) LookupAPIKey(_ context.Context, hash []byte) (store.APIKey, error) {
	if f.down {
		return store.APIKey{}, errors.New("database is down")
	}
	k, ok := f.keys[string(hash)]
	if !ok {
		return store.APIKey{}, store.ErrNotFound
	}
	return k, nil
}

func (f *fakeKeys) GetMerchant(_ context.Context, id string) (store.Merchant, error) {
	return store.Merchant{ID: id, AllowedOrigins: []string{"https://shop.example"}}, nil
}

// fakeVault records what reached the vault service.
type fakeVault struct {
	calls  int
	md     metadata.MD
	number string
	secret string
}

func (f *fakeVault) Tokenize(ctx context.Context, req *vaultv1.TokenizeRequest) (*vaultv1.Token, error) {
	f.calls++
	f.md, _ = metadata.FromIncomingContext(ctx)
	f.number = req.GetCard().GetNumber()
	return &vaultv1.Token{Token: "tok_test1234567890", Card: &vaultv1.CardMetadata{Brand: "visa", Bin: "424242", Last4: "4242", ExpMonth: 12, ExpYear: 2034, Fingerprint: "fp_secret"}}, nil
}

func (f *fakeVault) AttachCVC(ctx context.Context, req *vaultv1.AttachCVCRequest) (*vaultv1.Token, error) {
	f.calls++
	f.md, _ = metadata.FromIncomingContext(ctx)
	f.secret = req.GetClientSecret()
	return &vaultv1.Token{Token: req.GetToken(), CvcExpiresAt: timestamppb.New(time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC))}, nil
}

const (
	testPK = "pk_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	testSK = "sk_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)

func newTest(t *testing.T) (*Handler, http.Handler, *fakeKeys, *fakeVault, *bytes.Buffer) {
	t.Helper()
	keys := &fakeKeys{keys: map[string]store.APIKey{
		string(apikey.Hash(testPK)): {MerchantID: "mer_1", Kind: store.KeyPublishable},
		string(apikey.Hash(testSK)): {MerchantID: "mer_1", Kind: store.KeySecret},
	}}
	v := &fakeVault{}
	logs := &bytes.Buffer{}
	h := New(Options{Keys: keys, Vault: v, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	mux := http.NewServeMux()
	h.Register(mux)
	return h, mux, keys, v, logs
}

func TestFrameHeaders(t *testing.T) {
	cases := []struct {
		name      string
		query     string
		down      bool
		status    int
		ancestors string
	}{
		{"allowed origin", "pk=" + testPK + "&origin=https://shop.example&field=card", false, 200, "frame-ancestors https://shop.example;"},
		{"origin not allowed", "pk=" + testPK + "&origin=https://evil.example&field=card", false, 403, "frame-ancestors 'none'"},
		{"unknown key", "pk=pk_test_nope&origin=https://shop.example", false, 403, "frame-ancestors 'none'"},
		{"secret key", "pk=" + testSK + "&origin=https://shop.example", false, 403, "frame-ancestors 'none'"},
		{"origin with a path", "pk=" + testPK + "&origin=https://shop.example/x", false, 400, "frame-ancestors 'none'"},
		{"no origin", "pk=" + testPK, false, 400, "frame-ancestors 'none'"},
		{"store down", "pk=" + testPK + "&origin=https://shop.example", true, 503, "frame-ancestors 'none'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, mux, keys, _, _ := newTest(t)
			keys.down = tc.down
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest("GET", "/hosted/v1/frame.html?"+tc.query, nil))
			require.Equal(t, tc.status, w.Code, w.Body.String())
			csp := w.Header().Get("Content-Security-Policy")
			assert.Contains(t, csp, tc.ancestors)
			assert.True(t, strings.HasPrefix(csp, "default-src 'none'"), csp)
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
			if tc.status == 200 {
				for _, d := range []string{"script-src 'self'", "connect-src 'self'", "style-src 'self'", "report-uri /hosted/csp-report"} {
					assert.Contains(t, csp, d)
				}
				assert.Contains(t, w.Body.String(), `<script src="frame.js"></script>`)
			} else {
				assert.NotContains(t, w.Body.String(), "<script")
			}
		})
	}
}

func TestStaticAssets(t *testing.T) {
	_, mux, _, _, _ := newTest(t)
	cases := []struct {
		path, ctype string
		cors        bool
	}{
		{"/hosted/v1/obol.js", "text/javascript", true},
		{"/hosted/v1/obol.d.ts", "application/typescript", true},
		{"/hosted/v1/frame.js", "text/javascript", false},
		{"/hosted/v1/rules.js", "text/javascript", false},
		{"/hosted/v1/frame.css", "text/css", false},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest("GET", tc.path, nil))
			require.Equal(t, 200, w.Code)
			assert.True(t, strings.HasPrefix(w.Header().Get("Content-Type"), tc.ctype))
			assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
			assert.Equal(t, tc.cors, w.Header().Get("Access-Control-Allow-Origin") == "*")
		})
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/hosted/v2/obol.js", nil))
	assert.Equal(t, 404, w.Code)
}

func TestIntegrityServed(t *testing.T) {
	h, mux, _, _, _ := newTest(t)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/hosted/integrity.json", nil))
	require.Equal(t, 200, w.Code)
	var got struct {
		Current  string
		Versions []struct{ Version, URL, Integrity string }
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	require.Equal(t, Version, got.Current)
	require.Len(t, got.Versions, 1)
	assert.Equal(t, "/hosted/v1/obol.js", got.Versions[0].URL)
	assert.Equal(t, h.Integrity()["v1/obol.js"], got.Versions[0].Integrity)
	assert.Regexp(t, `^sha384-[A-Za-z0-9+/]{64}$`, got.Versions[0].Integrity)
}

func frameReq(body, auth, site string) *http.Request {
	r := httptest.NewRequest("POST", "/hosted/v1/tokens", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if auth != "" {
		r.Header.Set("Authorization", "Bearer "+auth)
	}
	if site != "" {
		r.Header.Set("Sec-Fetch-Site", site)
	}
	return r
}

func TestFrameTokenize(t *testing.T) {
	const good = `{"origin":"https://shop.example","card":{"number":"4242424242424242","exp_month":12,"exp_year":2034,"cvc":"123"}}`
	cases := []struct {
		name, body, auth, site string
		status                 int
		code                   string
	}{
		{"from the vault's frame", good, testPK, "same-origin", 200, ""},
		{"from another site", good, testPK, "cross-site", 403, "cross_origin_request"},
		{"from a sibling origin", good, testPK, "same-site", 403, "cross_origin_request"},
		{"secret key", good, testSK, "same-origin", 403, "permission_denied"},
		{"no key", good, "", "same-origin", 401, "unauthenticated"},
		{"no origin", `{"card":{"number":"4242424242424242","exp_month":12,"exp_year":2034}}`, testPK, "same-origin", 400, "field_required"},
		{"no card", `{"origin":"https://shop.example"}`, testPK, "same-origin", 400, "field_required"},
		{"unknown field", `{"origin":"https://shop.example","card":{"number":"4242424242424242"},"dedupe":true}`, testPK, "same-origin", 400, "malformed_body"},
		{"not JSON", `4242424242424242`, testPK, "same-origin", 400, "malformed_body"},
		{"wrong type", `{"origin":"https://shop.example","card":{"number":4242424242424242}}`, testPK, "same-origin", 400, "malformed_body"},
		{"trailing data", good + `{}`, testPK, "same-origin", 400, "malformed_body"},
		{"too large", `{"origin":"` + strings.Repeat("a", 9000) + `"}`, testPK, "same-origin", 413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, mux, _, v, logs := newTest(t)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, frameReq(tc.body, tc.auth, tc.site))
			require.Equal(t, tc.status, w.Code, w.Body.String())
			leaks := testenv.NewLeakScanner()
			leaks.AddCard("4242424242424242", "123")
			leaks.Scan("answer", w.Body.Bytes())
			leaks.Scan("logs", logs.Bytes())
			hits, _ := leaks.Report()
			require.Empty(t, hits)
			if tc.code != "" {
				require.Equal(t, 0, v.calls, "nothing reaches the vault")
				var e struct{ Error struct{ Code string } }
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e))
				require.Equal(t, tc.code, e.Error.Code)
				return
			}
			require.Equal(t, 1, v.calls)
			require.Equal(t, []string{"https://shop.example"}, v.md.Get("origin"), "the page origin is checked by the service")
			require.Equal(t, []string{"Bearer " + testPK}, v.md.Get("authorization"))
			var got map[string]any
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
			require.Equal(t, map[string]any{"token": "tok_test1234567890", "card": map[string]any{"brand": "visa", "last4": "4242", "exp_month": float64(12), "exp_year": float64(2034)}}, got,
				"only token and PAN-free metadata reach the page (no BIN, no fingerprint)")
		})
	}
}

func TestFrameTokenizeOldBrowser(t *testing.T) {
	// Without Sec-Fetch-Site, Origin must be the vault's own.
	_, mux, _, v, _ := newTest(t)
	body := `{"origin":"https://shop.example","card":{"number":"4242424242424242","exp_month":12,"exp_year":2034}}`
	r := frameReq(body, testPK, "")
	r.Host = "vault.example"
	r.Header.Set("Origin", "https://shop.example")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	require.Equal(t, 403, w.Code)
	r = frameReq(body, testPK, "")
	r.Host = "vault.example"
	r.Header.Set("Origin", "http://vault.example")
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	require.Equal(t, 200, w.Code)
	require.Equal(t, 1, v.calls)
}

func TestFrameCVC(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"attach", `{"origin":"https://shop.example","token":"tok_abc","client_secret":"cvcs_x","cvc":"123"}`, 200, ""},
		{"no client secret", `{"origin":"https://shop.example","token":"tok_abc","cvc":"123"}`, 400, "field_required"},
		{"no token", `{"origin":"https://shop.example","client_secret":"cvcs_x","cvc":"123"}`, 400, "field_required"},
		{"no origin", `{"token":"tok_abc","client_secret":"cvcs_x","cvc":"123"}`, 400, "field_required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, mux, _, v, _ := newTest(t)
			r := frameReq(tc.body, testPK, "same-origin")
			r.URL.Path = "/hosted/v1/cvc"
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			require.Equal(t, tc.status, w.Code, w.Body.String())
			if tc.code != "" {
				require.Contains(t, w.Body.String(), tc.code)
				require.Equal(t, 0, v.calls)
				return
			}
			require.Equal(t, "cvcs_x", v.secret)
			require.Equal(t, []string{"https://shop.example"}, v.md.Get("origin"))
			require.JSONEq(t, `{"token":"tok_abc","cvc_expires_at":"2026-12-01T17:00:00Z"}`, w.Body.String())
		})
	}
}

func TestCSPReport(t *testing.T) {
	cases := []struct {
		name, ctype, body string
		status            int
		directive         string
	}{
		{"report-uri format", "application/csp-report", `{"csp-report":{"document-uri":"https://vault/hosted/v1/frame.html?pk=x","effective-directive":"frame-ancestors","blocked-uri":"https://evil.example/4242424242424242"}}`, 204, "frame-ancestors"},
		{"violated-directive only", "application/csp-report", `{"csp-report":{"violated-directive":"script-src 'self'","blocked-uri":"inline","script-sample":"steal('4242 4242 4242 4242')"}}`, 204, "script-src"},
		{"reporting API", "application/reports+json", `[{"type":"csp-violation","body":{"effectiveDirective":"connect-src","blockedURL":"https://evil.example/?n=4242-4242-4242-4242"}}]`, 204, "connect-src"},
		{"unknown directive", "application/csp-report", `{"csp-report":{"effective-directive":"4242424242424242"}}`, 204, "other"},
		{"not a report", "application/csp-report", `{"hello":1}`, 400, ""},
		{"not JSON", "application/csp-report", `4242424242424242`, 400, ""},
		{"wrong type", "text/plain", `{"csp-report":{}}`, 400, ""},
		{"no CSP entries", "application/reports+json", `[{"type":"deprecation","body":{}}]`, 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, mux, _, _, logs := newTest(t)
			r := httptest.NewRequest("POST", "/hosted/csp-report", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ctype)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			require.Equal(t, tc.status, w.Code)
			if tc.directive != "" {
				require.Equal(t, 1.0, testutil.ToFloat64(h.violations.WithLabelValues(tc.directive)))
				require.Contains(t, logs.String(), `"directive":"`+tc.directive+`"`)
			} else {
				require.Equal(t, 1.0, testutil.ToFloat64(h.reports))
			}
			leaks := testenv.NewLeakScanner()
			leaks.AddCard("4242424242424242", "")
			leaks.Scan("logs", logs.Bytes())
			hits, _ := leaks.Report()
			require.Empty(t, hits, "a report's URLs and samples are never logged")
		})
	}
}

func FuzzParseReports(f *testing.F) {
	f.Add("application/csp-report", []byte(`{"csp-report":{"effective-directive":"frame-ancestors"}}`))
	f.Add("application/reports+json", []byte(`[{"type":"csp-violation","body":{"effectiveDirective":"script-src-elem"}}]`))
	f.Add("application/json", []byte(`{"csp-report":{"violated-directive":"img-src x"}}`))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		for _, d := range parseReports(ctype, body) {
			if d != "other" {
				require.True(t, directives[d], "label %q outside the fixed set", d)
			}
		}
	})
}

func FuzzFrameRequest(f *testing.F) {
	f.Add(`{"origin":"https://shop.example","card":{"number":"4242424242424242","exp_month":12,"exp_year":2034,"cvc":"123"}}`)
	f.Add(`{"origin":1}`)
	f.Add(`{"card":{"number":"4242 4242 4242 4242"}} x`)
	f.Fuzz(func(t *testing.T, body string) {
		_, mux, _, _, _ := newTest(t)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, frameReq(body, testPK, "same-origin"))
		if w.Code != 200 {
			var e struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), "status %d without a typed error: %q", w.Code, w.Body.String())
			require.NotEmpty(t, e.Error.Code, "status %d without a typed error: %q", w.Code, w.Body.String())
			if len(body) >= 12 {
				require.NotContains(t, e.Error.Message, body, "error message echoes the input")
			}
		}
	})
}

// TestREADMEIntegrity keeps the README's SRI table in step with the served
// obol.js: a change to the script without a new hash in the docs fails.
func TestREADMEIntegrity(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	h := New(Options{})
	for file, integ := range h.Integrity() {
		require.Contains(t, string(readme), "| `"+Prefix+file+"` | `"+integ+"` |", "README's Subresource Integrity table")
	}
}

func FuzzValidOrigin(f *testing.F) {
	for _, s := range []string{"https://shop.example", "http://127.0.0.1:3000", "https://a.example/x", "https://u@a.example", "javascript:alert(1)", "https://a.example?x", "https://[::1]:8443", "https://a.example;x", "http://a'b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, o string) {
		if !validOrigin(o) {
			return
		}
		// An accepted origin is exactly scheme://host[:port]: nothing that
		// could end the frame-ancestors directive or add another.
		require.False(t, strings.ContainsAny(o, " ;,'\"\t\r\n"), "accepted %q", o)
		require.Equal(t, 2, strings.Count(o, "/"), "accepted %q", o)
		require.True(t, strings.HasPrefix(o, "https://") || strings.HasPrefix(o, "http://"), "accepted %q", o)
	})
}

// TestValidOrigin: only scheme://host[:port] goes into frame-ancestors; a
// character that could end the directive or add a source is refused.
func TestValidOrigin(t *testing.T) {
	cases := []struct {
		origin string
		ok     bool
	}{
		{"https://shop.example", true},
		{"http://127.0.0.1:3000", true},
		{"https://[::1]:8443", true},
		{"https://shop.example/", false},
		{"https://shop.example/x", false},
		{"https://u@shop.example", false},
		{"ftp://shop.example", false},
		{"https://shop.example;script-src *", false},
		{"https://shop.example;x", false},
		{"http://a'b", false},
		{"https://shop.example:x", false},
		{"https://", false},
		{"", false},
	}
	for _, tc := range cases {
		t.Run(tc.origin, func(t *testing.T) {
			require.Equal(t, tc.ok, validOrigin(tc.origin))
		})
	}
}
