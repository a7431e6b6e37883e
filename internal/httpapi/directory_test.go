package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRoutingErrorNamesTheRightAddress: with a directory (obol dev), a 404
// for a path another service serves names that service's address; its own
// unknown paths, and every 404 without a directory, stay a plain one.
func TestRoutingErrorNamesTheRightAddress(t *testing.T) {
	t.Cleanup(func() { directory.Store(nil) })
	vault := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	tests := []struct {
		name, path, want string
		dir              bool
	}{
		{"payments on the vault's port", "/v1/payments", "no such endpoint on this address: payments are served by the gateway at http://127.0.0.1:8083", true},
		{"a payment's path on the vault's port", "/v1/payments/pay_1/capture", "no such endpoint on this address: payments are served by the gateway at http://127.0.0.1:8083", true},
		{"a prefix is not a word prefix", "/v1/paymentsx", "no such endpoint", true},
		{"the vault's own unknown path", "/v1/tokens/x/y/z", "no such endpoint", true},
		{"unknown elsewhere", "/v1/nothing", "no such endpoint", true},
		{"no directory (production)", "/v1/payments", "no such endpoint", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			directory.Store(nil)
			if tt.dir {
				SetDirectory([]Place{
					{Prefix: "/v1/tokens", What: "tokens are served by the vault", URL: "http://127.0.0.1:8080"},
					{Prefix: "/v1/payments", What: "payments are served by the gateway", URL: "http://127.0.0.1:8083"},
				})
			}
			r := httptest.NewRequest("GET", tt.path, nil)
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, vault))
			w := httptest.NewRecorder()
			RoutingErrorHandler(r.Context(), nil, nil, w, r, http.StatusNotFound)
			require.Equal(t, http.StatusNotFound, w.Code)
			var body struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
			assert.Equal(t, "not_found", body.Error.Code)
			assert.Equal(t, tt.want, body.Error.Message)
		})
	}
}
