package serve

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/testenv"
)

// BenchmarkAuthPath measures a successful authenticated REST request
// through the whole edge (metrics, logging, body limit, gateway mux, key
// check) without the failed-auth limiter, with the in-process counter
// (obol dev) and with the shared Redis counter (production: one pipelined
// round trip of two GET+PTTL per request).
func BenchmarkAuthPath(b *testing.B) {
	cases := []struct {
		name string
		mod  func(b *testing.B, o *Options)
	}{
		{"no_limiter", func(*testing.B, *Options) {}},
		{"memory_limiter", func(_ *testing.B, o *Options) { o.LimitAuthREST = true }},
		{"redis_limiter", func(b *testing.B, o *Options) {
			if testing.Short() {
				b.Skip("needs Redis")
			}
			o.LimitAuthREST = true
			o.Edge.AuthLimit.Counter = authlimit.NewRedis(testenv.SharedRedis(b).Client(b), fmt.Sprintf("obol:bench:%d:", time.Now().UnixNano()))
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			logLevel.Set(slog.LevelWarn)
			defer logLevel.Set(slog.LevelInfo)
			ts := startTest(b, func(o *Options) { c.mod(b, o) })
			h := ts.http.Handler
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/v1/items/abc", nil)
				req.RemoteAddr = "198.51.100.1:4444"
				req.Header.Set("Authorization", "Bearer "+goodKey)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
