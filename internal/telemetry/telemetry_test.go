package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/telemetry"
)

const testPAN = "4242424242424242"

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     map[string]string
		want    telemetry.Mode
		wantErr string // a variable the error must name
	}{
		{"default off", nil, telemetry.Off, ""},
		{"endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, telemetry.OTLP, ""},
		{"traces endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, telemetry.OTLP, ""},
		{"OBOL_TRACING=otlp", map[string]string{"OBOL_TRACING": "otlp"}, telemetry.OTLP, ""},
		{"OBOL_TRACING=OTLP", map[string]string{"OBOL_TRACING": "OTLP"}, telemetry.OTLP, ""},
		{"explicit off wins over an endpoint", map[string]string{"OBOL_TRACING": "off", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, telemetry.Off, ""},
		{"SDK disabled wins", map[string]string{"OTEL_SDK_DISABLED": "true", "OBOL_TRACING": "otlp"}, telemetry.Off, ""},
		{"SDK not disabled", map[string]string{"OTEL_SDK_DISABLED": "false", "OBOL_TRACING": "otlp"}, telemetry.OTLP, ""},
		{"http/protobuf accepted", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OBOL_TRACING": "otlp"}, telemetry.OTLP, ""},
		{"traces exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, telemetry.Off, ""},
		{"traces exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, telemetry.OTLP, ""},
		{"traces exporter console refused", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, telemetry.Off, "OTEL_TRACES_EXPORTER"},
		{"unknown mode", map[string]string{"OBOL_TRACING": "jaeger"}, telemetry.Off, "OBOL_TRACING"},
		{"bad SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "yes"}, telemetry.Off, "OTEL_SDK_DISABLED"},
		{"grpc protocol refused", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OBOL_TRACING": "otlp"}, telemetry.Off, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"traces protocol refused", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, telemetry.Off, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := telemetry.ParseMode(func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				require.ErrorIs(t, err, telemetry.ErrConfig)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

// memProvider installs a global provider recording spans in memory and the
// W3C propagator, restored at the end of the test.
func memProvider(t *testing.T) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp, err := telemetry.NewProvider(context.Background(), "obol-test", sdktrace.WithSyncer(exp))
	require.NoError(t, err)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(telemetry.Propagator())
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	return exp, tp
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	_, tp := memProvider(t)
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "x").WithGroup("g")
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "in span", "k", "v")
	span.End()
	log.InfoContext(context.Background(), "no span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var in, out map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &in))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &out))
	g := in["g"].(map[string]any)
	assert.Equal(t, span.SpanContext().TraceID().String(), g["trace_id"])
	assert.Equal(t, span.SpanContext().SpanID().String(), g["span_id"])
	assert.Equal(t, "v", g["k"])
	assert.Equal(t, "x", in["service"])
	assert.NotContains(t, lines[1], "trace_id")

	h := telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))
	assert.Same(t, h, telemetry.LogHandler(h), "wrapping twice is a no-op")
	l := telemetry.Logger(slog.New(h))
	assert.Same(t, l, telemetry.Logger(l))
}

// TestTransportSpansNameTheHostOnly: the client span of an outbound call
// carries the method, host, port and status, never the path or query
// (here a card number in both), and the callee receives traceparent of the
// same trace; a transport error is recorded without its text.
func TestTransportSpansNameTheHostOnly(t *testing.T) {
	exp, tp := memProvider(t)
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(502)
	}))
	defer srv.Close()
	c := &http.Client{Transport: telemetry.Transport("acquirer test", nil)}
	ctx, parent := tp.Tracer("t").Start(context.Background(), "parent")
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/cards/"+testPAN+"?pan="+testPAN, strings.NewReader(`{}`))
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, req.Header.Get("traceparent"), "the caller's request is not modified")
	// A dead address: the error's text (it quotes the URL) stays out.
	dead, err := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:1/x/"+testPAN, nil)
	require.NoError(t, err)
	_, err = c.Do(dead)
	require.Error(t, err)
	parent.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 3)
	call, failed := spans[0], spans[1]
	assert.Equal(t, "acquirer test POST", call.Name)
	assert.Equal(t, trace.SpanKindClient, call.SpanKind)
	assert.Equal(t, parent.SpanContext().TraceID(), call.SpanContext.TraceID())
	tp2 := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(got))
	assert.Equal(t, call.SpanContext.TraceID(), trace.SpanContextFromContext(tp2).TraceID(), "traceparent reached the callee")
	assert.Equal(t, call.SpanContext.SpanID(), trace.SpanContextFromContext(tp2).SpanID())
	keys := map[attribute.Key]string{}
	for _, a := range call.Attributes {
		keys[a.Key] = a.Value.String()
	}
	assert.Equal(t, map[attribute.Key]string{"http.request.method": "POST", "server.address": "127.0.0.1", "server.port": srv.URL[strings.LastIndexByte(srv.URL, ':')+1:],
		"network.peer.address": "127.0.0.1", "http.response.status_code": "502"}, keys)
	assert.Equal(t, codes.Error, call.Status.Code)
	assert.Equal(t, "GET", failed.Name[len(failed.Name)-3:])
	assert.Equal(t, sdktrace.Status{Code: codes.Error, Description: "transport error"}, failed.Status)
	for _, s := range spans {
		assert.NotContains(t, fmtSpan(s), testPAN)
	}
}

func fmtSpan(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name + " " + s.Status.Description)
	for _, a := range s.Attributes {
		b.WriteString(" " + string(a.Key) + "=" + a.Value.String())
	}
	for _, e := range s.Events {
		b.WriteString(" " + e.Name)
		for _, a := range e.Attributes {
			b.WriteString(" " + string(a.Key) + "=" + a.Value.String())
		}
	}
	return b.String()
}

// TestScrubExporter: whatever a span carries, the exported copy has no run
// of 12+ digits and no raw URL attributes.
func TestScrubExporter(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(telemetry.ScrubExporter(exp)))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	_, span := tp.Tracer("t").Start(context.Background(), "GET /v1/cards/"+testPAN,
		trace.WithAttributes(attribute.String("url.full", "https://x/?q=1"), attribute.String("note", "card 4242 4242 4242 4242"),
			attribute.StringSlice("list", []string{"4242-4242-4242-4242", "ok"}), attribute.Int("n", 7), attribute.String("id", "pay_1234")))
	span.AddEvent("event "+testPAN, trace.WithAttributes(attribute.String("detail", testPAN)))
	span.SetStatus(codes.Error, "bad card "+testPAN)
	span.End()
	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "GET /v1/cards/[digits]", s.Name)
	assert.Equal(t, "bad card [digits]", s.Status.Description)
	assert.Equal(t, []attribute.KeyValue{attribute.String("note", "card [digits]"), attribute.StringSlice("list", []string{"[digits]", "ok"}), attribute.Int("n", 7), attribute.String("id", "pay_1234")}, s.Attributes)
	require.Len(t, s.Events, 1)
	assert.Equal(t, "event [digits]", s.Events[0].Name)
	assert.Equal(t, []attribute.KeyValue{attribute.String("detail", "[digits]")}, s.Events[0].Attributes)
}

func TestScrubDigits(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"short runs stay", "pay_123 amount 2500 bin 424242", "pay_123 amount 2500 bin 424242"},
		{"pan", "x" + testPAN + "y", "x[digits]y"},
		{"spaced", "4242 4242 4242 4242", "[digits]"},
		{"dashed", "a 4242-4242-4242-4242.", "a [digits]."},
		{"eleven digits stay", "12345678901", "12345678901"},
		{"twelve go", "123456789012", "[digits]"},
		{"up to three joiners join", "424242  4242424242", "[digits]"},
		{"dotted", "4242.4242.4242.4242", "[digits]"},
		{"a port stays apart", "127.0.0.1:8080", "127.0.0.1:8080"},
	} {
		t.Run(c.name, func(t *testing.T) { assert.Equal(t, c.want, telemetry.ScrubDigits(c.in)) })
	}
}

var longRun = regexp.MustCompile(`[0-9](?:[ -]?[0-9]){11}`)

// plainShort: ASCII with fewer than 12 digits in all, which the scrubber
// must leave as it is.
func plainShort(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n < 12
}

func FuzzScrubDigits(f *testing.F) {
	for _, s := range []string{"", testPAN, "4242 4242 4242 4242", "1-2-3-4-5-6-7-8-9-0-1-2", "ab12 34"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := telemetry.ScrubDigits(s)
		require.False(t, longRun.MatchString(out), "ScrubDigits(%q) = %q still holds 12 digits", s, out)
		if plainShort(s) {
			require.Equal(t, s, out, "ScrubDigits changed a string without 12 digits")
		}
	})
}

// TestSetupExportsOverOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, Setup
// installs an OTLP/HTTP exporter; shutdown flushes the batch to the
// collector, scrubbed and with the default service name; off, nothing is
// sent and spans are not recorded.
func TestSetupExportsOverOTLP(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var paths []string
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, paths = append(bodies, b), append(paths, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer col.Close()
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	t.Run("off", func(t *testing.T) {
		shutdown, err := telemetry.Setup(context.Background(), "obol-testd", nil)
		require.NoError(t, err)
		_, span := otel.Tracer("t").Start(context.Background(), "nothing")
		assert.False(t, span.IsRecording())
		span.End()
		require.NoError(t, shutdown(context.Background()))
		assert.Equal(t, telemetry.Propagator(), otel.GetTextMapPropagator(), "traceparent is propagated even with tracing off")
	})
	t.Run("bad setting", func(t *testing.T) {
		t.Setenv("OBOL_TRACING", "zipkin")
		_, err := telemetry.Setup(context.Background(), "obol-testd", nil)
		require.ErrorIs(t, err, telemetry.ErrConfig)
	})
	t.Run("otlp", func(t *testing.T) {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
		var logs bytes.Buffer
		shutdown, err := telemetry.Setup(context.Background(), "obol-testd", slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, err)
		_, span := otel.Tracer("t").Start(context.Background(), "exported "+testPAN)
		span.End()
		mu.Lock()
		assert.Empty(t, bodies, "batched: nothing sent before the flush")
		mu.Unlock()
		require.NoError(t, shutdown(context.Background()))
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, bodies, 1)
		assert.Equal(t, "POST /v1/traces application/x-protobuf", paths[0])
		assert.Contains(t, string(bodies[0]), "obol-testd")
		assert.Contains(t, string(bodies[0]), "exported [digits]")
		assert.NotContains(t, string(bodies[0]), testPAN)
		assert.Contains(t, logs.String(), "tracing on")
	})
}

// TestPropagator: a caller's traceparent is continued and passed on; its
// tracestate is neither; a traceparent whose ids hold what looks like a
// card number is ignored (the request starts a new trace).
func TestPropagator(t *testing.T) {
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, c := range []struct {
		name        string
		traceparent string
		continued   bool
	}{
		{"valid", parent, true},
		{"card number in the trace id", "00-4242424242424242abcdefabcdefabcd-b7ad6b7169203331-01", false},
		{"card number across the trace id", "00-abcdef5555555555554444abcdefabcd-b7ad6b7169203331-01", false},
		{"card number in the span id", "00-0af7651916cd43dd8448eb211c80319c-4242424242424242-01", false},
		{"short digit runs are fine", "00-0af7651916cd43dd8448eb211c803190-12345678abcdef01-01", true},
		{"malformed", "00-xyz-b7ad6b7169203331-01", false},
		{"absent", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.traceparent != "" {
				h.Set("traceparent", c.traceparent)
			}
			h.Set("tracestate", "obol="+testPAN)
			ctx := telemetry.Propagator().Extract(context.Background(), propagation.HeaderCarrier(h))
			sc := trace.SpanContextFromContext(ctx)
			require.Equal(t, c.continued, sc.IsValid())
			assert.Empty(t, sc.TraceState().String(), "tracestate is not taken")
			out := http.Header{}
			telemetry.Propagator().Inject(ctx, propagation.HeaderCarrier(out))
			if c.continued {
				assert.Equal(t, c.traceparent, out.Get("traceparent"))
			} else {
				assert.Empty(t, out.Get("traceparent"))
			}
			assert.Empty(t, out.Get("tracestate"))
		})
	}
	assert.Equal(t, []string{"traceparent"}, telemetry.Propagator().Fields())
}

// TestGeneratedIDsNeverLookLikeCards: the provider's trace and span ids
// never hold what looks like a card number (measured: a plain random
// generator gives one trace id in about 1,200 and one span id in about
// 5,700, so 5,000 traces would show several).
func TestGeneratedIDsNeverLookLikeCards(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp, err := telemetry.NewProvider(context.Background(), "obol-test", sdktrace.WithSyncer(exp))
	require.NoError(t, err)
	defer func() { _ = tp.Shutdown(context.Background()) }()
	for range 5000 {
		ctx, root := tp.Tracer("t").Start(context.Background(), "root")
		_, child := tp.Tracer("t").Start(ctx, "child")
		child.End()
		root.End()
	}
	spans := exp.GetSpans()
	require.Len(t, spans, 10000)
	for _, s := range spans {
		require.False(t, cardtext.Contains(s.SpanContext.TraceID().String()), s.SpanContext.TraceID().String())
		require.False(t, cardtext.Contains(s.SpanContext.SpanID().String()), s.SpanContext.SpanID().String())
	}
}
