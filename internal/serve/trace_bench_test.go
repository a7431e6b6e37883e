package serve

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/obolpay/obol/internal/telemetry"
)

// discard is an exporter that drops spans (what is measured is the
// request path, not a collector).
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracing measures an authenticated REST request through the edge
// with tracing off (the default: noop provider), and on (the SDK with a
// batching processor, every span sampled, the scrubbing exporter), with
// and without a caller's traceparent.
func BenchmarkTracing(b *testing.B) {
	for _, c := range []struct {
		name        string
		on          bool
		traceparent string
	}{
		{"off", false, ""},
		{"off_traceparent", false, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"on", true, ""},
		{"on_traceparent", true, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	} {
		b.Run(c.name, func(b *testing.B) {
			otel.SetTextMapPropagator(telemetry.Propagator())
			if c.on {
				tp, err := telemetry.NewProvider(context.Background(), "bench", sdktrace.WithBatcher(telemetry.ScrubExporter(discard{})))
				require.NoError(b, err)
				otel.SetTracerProvider(tp)
				defer func() { _ = tp.Shutdown(context.Background()) }()
			} else {
				otel.SetTracerProvider(noop.NewTracerProvider())
			}
			defer func() {
				otel.SetTracerProvider(noop.NewTracerProvider())
				otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
			}()
			logLevel.Set(slog.LevelWarn)
			defer logLevel.Set(slog.LevelInfo)
			ts := startTest(b, nil)
			h := ts.http.Handler
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/v1/items/abc", nil)
				req.Header.Set("Authorization", "Bearer "+goodKey)
				if c.traceparent != "" {
					req.Header.Set("traceparent", c.traceparent)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
