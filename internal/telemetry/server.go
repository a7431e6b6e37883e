package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

const serverTracer = "github.com/obolpay/obol/internal/serve"

// StartServerHTTP starts the server span of a REST request, continuing a
// trace from the request's traceparent. Its name is the method alone until
// EndServerHTTP renames it after the matched route template: the raw path
// never becomes a name or an attribute.
func StartServerHTTP(ctx context.Context, h http.Header, method string) (context.Context, trace.Span) {
	ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
	return otel.Tracer(serverTracer).Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", method)))
}

// EndServerHTTP names the span "<METHOD> <route template>", records the
// route template and status, and ends it (5xx marks it as an error).
func EndServerHTTP(span trace.Span, method, route string, status int) {
	span.SetName(method + " " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// GRPCServerHandler is the stats handler that gives every gRPC server call
// a span named after the full method, continuing the caller's trace. It
// records no message payloads (only sizes, as message events).
// Health checks and reflection make no spans (a load balancer polls them).
func GRPCServerHandler() stats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithFilter(filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection."))))
}

// GRPCClientOption gives every call of a gRPC client a client span and
// propagates traceparent in the call's metadata.
func GRPCClientOption() grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler())
}
