package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemoShopOwnPageOnly: the demo shop's backend charges with the dev
// merchant's secret key, so only its own page may call it. It used to
// answer any Origin (a page on any site the developer visits could
// charge tokens or mint CVC client secrets) and any content type (a plain
// cross-site form post).
func TestDemoShopOwnPageOnly(t *testing.T) {
	var calls atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if strings.HasSuffix(r.URL.Path, "/cvc_client_secrets") {
			_, _ = io.WriteString(w, `{"client_secret":"cvcs_test"}`)
			return
		}
		_, _ = io.WriteString(w, `{"id":"pay_1","status":"authorized"}`)
	}))
	defer backend.Close()
	d, err := listenDemo("127.0.0.1:0", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Serve(ctx, demoConfig{VaultURL: backend.URL, GatewayURL: backend.URL, SecretKey: "sk_test_x", PublishableKey: "pk_test_x"})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	_, port, _ := strings.Cut(strings.TrimPrefix(d.Origin(), "http://"), ":")
	tests := []struct {
		name, origin, ctype string
		status              int
		code                string
	}{
		{"own page", d.Origin(), "application/json", 200, ""},
		{"own page under localhost", "http://localhost:" + port, "application/json; charset=utf-8", 200, ""},
		{"another site", "https://evil.example", "application/json", 403, "cross_origin_request"},
		{"another loopback port", "http://127.0.0.1:1", "application/json", 403, "cross_origin_request"},
		{"a rebound name on the same port", "http://evil.example:" + port, "application/json", 403, "cross_origin_request"},
		{"no origin", "", "application/json", 403, "cross_origin_request"},
		{"null origin", "null", "application/json", 403, "cross_origin_request"},
		{"a form post", d.Origin(), "application/x-www-form-urlencoded", 415, "content_type_invalid"},
		{"text/plain", d.Origin(), "text/plain", 415, "content_type_invalid"},
		{"no content type", d.Origin(), "", 415, "content_type_invalid"},
	}
	for _, path := range []string{"/api/pay", "/api/cvc-secret"} {
		for _, tt := range tests {
			t.Run(path+" "+tt.name, func(t *testing.T) {
				before := calls.Load()
				req, err := http.NewRequest(http.MethodPost, d.Origin()+path, strings.NewReader(`{"token":"tok_abcdefghijkl"}`))
				require.NoError(t, err)
				if tt.origin != "" {
					req.Header.Set("Origin", tt.origin)
				}
				if tt.ctype != "" {
					req.Header.Set("Content-Type", tt.ctype)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				require.Equal(t, tt.status, resp.StatusCode, string(body))
				if tt.code != "" {
					assert.Contains(t, string(body), `"error":"`+tt.code+`"`)
					assert.Equal(t, before, calls.Load(), "the backend was not called")
				} else {
					assert.Equal(t, before+1, calls.Load())
				}
			})
		}
	}
}
