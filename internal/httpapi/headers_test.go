package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
)

// TestHeadersNeverSilentlyDropped: a header Obol reads reaches the service
// as gRPC metadata exactly as sent, or the request is a typed 400 naming
// the header. grpc-gateway used to skip a non-ASCII value, so a retry's
// Idempotency-Key vanished and the retry made a second payment.
func TestHeadersNeverSilentlyDropped(t *testing.T) {
	mux := NewMux(slog.New(slog.DiscardHandler))
	require.NoError(t, mux.HandlePath(http.MethodPost, "/v1/echo", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		ctx, err := runtime.AnnotateIncomingContext(r.Context(), mux, r, "/obol.test.v1.Test/Echo")
		// t is the parent test; the handler runs on a subtest's goroutine,
		// where require (FailNow) must not be called on it.
		if !assert.NoError(t, err) {
			return
		}
		md, _ := metadata.FromIncomingContext(ctx)
		_ = json.NewEncoder(w).Encode(map[string][]string{
			"idempotency-key": md.Get("idempotency-key"), "origin": md.Get("origin"), "authorization": md.Get("authorization"),
		})
	}))
	cases := []struct {
		name    string
		headers [][2]string
		status  int
		code    string
		field   string
		seen    map[string][]string
	}{
		{"ascii key reaches the service", [][2]string{{"Idempotency-Key", "order-1"}}, 200, "", "", map[string][]string{"idempotency-key": {"order-1"}}},
		{"origin reaches the service", [][2]string{{"Origin", "https://shop.example"}}, 200, "", "", map[string][]string{"origin": {"https://shop.example"}}},
		{"authorization once", [][2]string{{"Authorization", "Bearer sk_test_x"}}, 200, "", "", map[string][]string{"authorization": {"Bearer sk_test_x"}}},
		{"non-ascii key", [][2]string{{"Idempotency-Key", "commande-é"}}, 400, "idempotency_key_invalid", "Idempotency-Key", nil},
		{"latin-1 byte key", [][2]string{{"Idempotency-Key", "order-\xff"}}, 400, "idempotency_key_invalid", "Idempotency-Key", nil},
		{"key too long", [][2]string{{"Idempotency-Key", strings.Repeat("k", 256)}}, 400, "idempotency_key_invalid", "Idempotency-Key", nil},
		{"key looks like a card", [][2]string{{"Idempotency-Key", "4242.4242.4242.4242"}}, 400, "idempotency_key_invalid", "Idempotency-Key", nil},
		{"key twice", [][2]string{{"Idempotency-Key", "a-1"}, {"Idempotency-Key", "b-2"}}, 400, "idempotency_key_invalid", "Idempotency-Key", nil},
		{"key under grpc-metadata too", [][2]string{{"Idempotency-Key", "a-1"}, {"Grpc-Metadata-Idempotency-Key", "b-2"}}, 400, "header_invalid", "Grpc-Metadata-Idempotency-Key", nil},
		{"origin under grpc-metadata", [][2]string{{"Grpc-Metadata-Origin", "https://shop.example"}}, 400, "header_invalid", "Grpc-Metadata-Origin", nil},
		{"non-ascii origin", [][2]string{{"Origin", "https://shöp.example"}}, 400, "header_invalid", "Origin", nil},
		{"origin twice", [][2]string{{"Origin", "https://a.example"}, {"Origin", "https://b.example"}}, 400, "header_invalid", "Origin", nil},
		{"non-ascii authorization", [][2]string{{"Authorization", "Bearer sk_ü"}}, 400, "header_invalid", "Authorization", nil},
		// A header spelt with underscores used to be silently ignored.
		{"key with an underscore", [][2]string{{"Idempotency_Key", "order-1"}}, 400, "header_invalid", "Idempotency_key", nil},
		{"key with underscores, lower case", [][2]string{{"idempotency_key", "order-1"}}, 400, "header_invalid", "Idempotency_key", nil},
		{"origin with an underscore", [][2]string{{"Origin_", "https://shop.example"}}, 200, "", "", nil},
		{"authorization spelt oddly", [][2]string{{"Author_ization", "Bearer sk_test_x"}}, 200, "", "", nil},
		{"request id with an underscore", [][2]string{{"X_Request_Id", "r-1"}}, 400, "header_invalid", "X_request_id", nil},
		{"key with a comma (merged duplicates)", [][2]string{{"Idempotency-Key", "a1, a2"}}, 400, "idempotency_key_invalid", "Idempotency-Key", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/echo", strings.NewReader("{}"))
			for _, h := range tc.headers {
				req.Header.Add(h[0], h[1])
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			require.Equal(t, tc.status, rec.Code, string(body))
			if tc.status != 200 {
				var eb ErrorBody
				require.NoError(t, json.Unmarshal(body, &eb))
				assert.Equal(t, tc.code, eb.Error.Code)
				assert.Equal(t, tc.field, eb.Error.Field)
				for _, h := range tc.headers {
					if len(h[1]) > 3 {
						assert.NotContains(t, string(body), h[1], "the error never echoes a header value")
					}
				}
				return
			}
			var seen map[string][]string
			require.NoError(t, json.Unmarshal(body, &seen))
			for k, want := range tc.seen {
				assert.Equal(t, want, seen[k], k)
			}
		})
	}
}
