package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/obolpay/obol/internal/telemetry"
	"github.com/obolpay/obol/internal/testenv"
)

// TestSpansNamedByTemplate: REST spans continue the caller's traceparent
// and are named "<METHOD> <route template>" (or "other"), whatever card
// number the method, path or query held; a gRPC call continues its
// caller's trace under the full method name; health checks make no span;
// the request log line carries the trace id; no span holds the PAN.
func TestSpansNamedByTemplate(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp, err := telemetry.NewProvider(context.Background(), "obol-test", sdktrace.WithSyncer(exp))
	require.NoError(t, err)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(telemetry.Propagator())
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	ts := startTest(t, nil)
	ctx, caller := tp.Tracer("caller").Start(context.Background(), "caller")
	tid := caller.SpanContext().TraceID()
	hdr := http.Header{}
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(hdr))
	auth := []string{"Authorization", "Bearer " + goodKey, "traceparent", hdr.Get("traceparent")}
	for _, c := range []struct{ method, path, want string }{
		{http.MethodGet, "/v1/items/" + testPAN + "?pan=" + testPAN, "GET /v1/items/{id}"},
		{http.MethodGet, "/v1/" + testPAN, "GET other"},
		{testPAN, "/v1/raw", "other /v1/raw"},
		{testPAN, "/" + testPAN, "other other"},
		{http.MethodPost, "/v1/raw?q=" + testPAN, "POST /v1/raw"},
	} {
		ts.do(t, c.method, c.path, auth...)
		spans := exp.GetSpans()
		require.NotEmpty(t, spans)
		last := spans[len(spans)-1]
		assert.Equal(t, c.want, last.Name, c.path)
		assert.Equal(t, trace.SpanKindServer, last.SpanKind)
		assert.Equal(t, tid, last.SpanContext.TraceID(), "continues the caller's trace")
		assert.Equal(t, caller.SpanContext().SpanID(), last.Parent.SpanID())
	}

	conn, err := grpc.NewClient(ts.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()), telemetry.GRPCClientOption())
	require.NoError(t, err)
	defer conn.Close()
	gctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+goodKey)
	require.NoError(t, conn.Invoke(gctx, "/test.Items/Get", &emptypb.Empty{}, &emptypb.Empty{}))
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	caller.End()

	kinds := map[string]int{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == tid && strings.Contains(s.Name, "test.Items/Get") {
			kinds[s.SpanKind.String()]++
		}
	}
	assert.Equal(t, map[string]int{"client": 1, "server": 1}, kinds)
	var serverSpans int
	for _, s := range exp.GetSpans() {
		if s.Name == "grpc.health.v1.Health/Check" && s.SpanKind == trace.SpanKindServer {
			serverSpans++
		}
	}
	assert.Zero(t, serverSpans, "health checks make no server span")

	var traced int
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && (rec["msg"] == "http request" || rec["msg"] == "grpc request") && rec["trace_id"] == tid.String() {
			traced++
		}
	}
	assert.Equal(t, 6, traced, "every request log line carries the trace id")

	scan := testenv.NewLeakScanner()
	scan.AddCard(testPAN, "")
	var all strings.Builder
	for _, s := range exp.GetSpans() {
		all.WriteString(s.Name + " " + s.Status.Description)
		for _, a := range s.Attributes {
			all.WriteString(" " + string(a.Key) + "=" + a.Value.String())
		}
		for _, e := range s.Events {
			all.WriteString(" " + e.Name)
			for _, a := range e.Attributes {
				all.WriteString(" " + string(a.Key) + "=" + a.Value.String())
			}
		}
	}
	scan.Scan("spans", []byte(all.String()))
	hits, summary := scan.Report()
	assert.Empty(t, hits, summary)
}
