package gatewayd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/obolpay/obol/internal/telemetry"
	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/proxy/gatewayd"
)

// installTracing makes the global TracerProvider record every span in
// memory (synchronously: a span is exported when it ends) and installs the
// W3C propagator, as telemetry.Setup does in the daemons.
func installTracing(t *testing.T) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp, err := telemetry.NewProvider(context.Background(), "obol-test", sdktrace.WithSyncer(exp))
	require.NoError(t, err)
	prevProp := otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(telemetry.Propagator())
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(prevProp)
	})
	return exp, tp
}

// spanText is everything a span carries that an exporter ships: name,
// attributes, events with theirs, status, links and resource.
func spanText(s tracetest.SpanStub) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name=%s kind=%s status=%s/%s state=%s parent_state=%s\n", s.Name, s.SpanKind, s.Status.Code, s.Status.Description, s.SpanContext.TraceState(), s.Parent.TraceState())
	for _, a := range s.Attributes {
		fmt.Fprintf(&b, "attr %s=%s\n", a.Key, a.Value.String())
	}
	for _, e := range s.Events {
		fmt.Fprintf(&b, "event %s\n", e.Name)
		for _, a := range e.Attributes {
			fmt.Fprintf(&b, "  attr %s=%s\n", a.Key, a.Value.String())
		}
	}
	for _, l := range s.Links {
		for _, a := range l.Attributes {
			fmt.Fprintf(&b, "link attr %s=%s\n", a.Key, a.Value.String())
		}
	}
	if s.Resource != nil {
		for _, a := range s.Resource.Attributes() {
			fmt.Fprintf(&b, "resource %s=%s\n", a.Key, a.Value.String())
		}
	}
	return b.String()
}

// TestTracingAcrossHops: with tracing on, a payment (authorize, capture,
// refund) and a forward request through the real stack give one trace per
// merchant request, continued from the merchant's traceparent, with spans
// for the REST edge, the gateway's gRPC clients and vaultd (Detokenize),
// riskd (Evaluate) and ledgerd (RecordPayment) as servers, and the
// acquirer's HTTP client call; the request's log line carries the trace id;
// and no span anywhere carries a test card number (even one sent in a REST
// path, a forward destination's query or the caller's tracestate).
func TestTracingAcrossHops(t *testing.T) {
	exp, tp := installTracing(t)
	up := newUpstream(t)
	routes := filepath.Join(t.TempDir(), "routes.yaml")
	require.NoError(t, os.WriteFile(routes, []byte(routeFile(up.host())), 0o600))
	s := start(t, func(c *gatewayd.Config, _ string) {
		c.RoutesFile = routes
		c.UpstreamTLS = up.srv.Client().Transport.(*http.Transport).TLSClientConfig
		c.ForwardTimeout = 2 * time.Second
	})
	merchant := tp.Tracer("merchant")
	// traced sends a request as a merchant's traced backend would: inside
	// its own span, with traceparent.
	traced := func(name, method, url, body string, hdr map[string]string) (trace.TraceID, int, string) {
		t.Helper()
		ctx, span := merchant.Start(context.Background(), name)
		defer span.End()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.sk)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
		// A careless caller's tracestate: not continued.
		req.Header.Set("tracestate", "shop=4242424242424242")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return span.SpanContext().TraceID(), resp.StatusCode, string(b)
	}
	tok := s.tokenize(t, "4242424242424242", "123")
	payTrace, st, out := traced("pay", "POST", "http://"+s.gw+"/v1/payments", `{"token":"`+tok+`","amount":2500,"currency":"usd","capture":false}`, map[string]string{"Idempotency-Key": "trace-1"})
	require.Equal(t, 200, st, out)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &p))
	id := p["id"].(string)
	capTrace, st, out := traced("capture", "POST", "http://"+s.gw+"/v1/payments/"+id+"/capture", `{}`, map[string]string{"Idempotency-Key": "trace-cap"})
	require.Equal(t, 200, st, out)
	refTrace, st, out := traced("refund", "POST", "http://"+s.gw+"/v1/payments/"+id+"/refunds", `{"amount":100}`, map[string]string{"Idempotency-Key": "trace-ref"})
	require.Equal(t, 200, st, out)
	// A card number in a REST path: the span is named by the template.
	_, st, _ = traced("read", "GET", "http://"+s.gw+"/v1/payments/5555555555554444", "", nil)
	require.Equal(t, 404, st)
	// The payment used the CVC: the forward reveals another token's.
	ftok := s.tokenize(t, "4242424242424242", "123")
	fwdTrace, st, out := traced("forward", "POST", "http://"+s.gw+"/v1/forward", `{"amount":1000,"card":{"number":"`+ftok+`","exp_month":"`+ftok+`","exp_year":"`+ftok+`","cvc":"`+ftok+`"}}`,
		map[string]string{"Obol-Destination": "https://" + up.host() + "/v1/charges?note=5555555555554444", "Content-Type": "application/json", "X-Card-Expiry": ftok})
	require.Equal(t, 201, st, out)
	require.NoError(t, tp.ForceFlush(context.Background()))

	spans := exp.GetSpans()
	byTrace := map[trace.TraceID][]string{}
	for _, sp := range spans {
		byTrace[sp.SpanContext.TraceID()] = append(byTrace[sp.SpanContext.TraceID()], sp.SpanKind.String()+" "+sp.Name)
	}
	for _, c := range []struct {
		name  string
		trace trace.TraceID
		want  []string
	}{
		{"authorize", payTrace, []string{
			"server POST /v1/payments",
			"client obol.vault.v1.VaultService/Detokenize", "server obol.vault.v1.VaultService/Detokenize",
			"client obol.risk.v1.RiskService/Evaluate", "server obol.risk.v1.RiskService/Evaluate",
			"client obol.ledger.v1.LedgerService/RecordPayment", "server obol.ledger.v1.LedgerService/RecordPayment",
			"client acquirer simulator POST",
		}},
		{"capture", capTrace, []string{"server POST /v1/payments/{id}/capture", "server obol.ledger.v1.LedgerService/RecordPayment", "client acquirer simulator POST"}},
		{"refund", refTrace, []string{"server POST /v1/payments/{id}/refunds", "server obol.ledger.v1.LedgerService/RecordPayment", "client acquirer simulator POST"}},
		{"forward", fwdTrace, []string{"server POST /v1/forward", "server obol.vault.v1.VaultService/Detokenize", "client forward POST"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := byTrace[c.trace]
			for _, w := range c.want {
				assert.Contains(t, got, w, "trace %s: spans %v", c.trace, got)
			}
		})
	}
	var names []string
	for _, sp := range spans {
		names = append(names, sp.Name)
	}
	assert.Contains(t, names, "GET /v1/payments/{id}", "a card-shaped path is named by its template")

	// The request log lines of the authorization carry its trace id: the
	// gateway's REST line and, one hop on, vaultd's Detokenize line.
	logged := map[string]bool{}
	for _, line := range strings.Split(s.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["trace_id"] != payTrace.String() {
			continue
		}
		assert.Len(t, rec["span_id"], 16)
		switch {
		case rec["msg"] == "http request" && rec["route"] == "/v1/payments":
			logged["gateway REST"] = true
		case rec["msg"] == "grpc request" && rec["method"] == "Detokenize":
			logged["vaultd Detokenize"] = true
		}
	}
	assert.Equal(t, map[string]bool{"gateway REST": true, "vaultd Detokenize": true}, logged, "log lines with trace_id %s", payTrace)

	leaks := testenv.NewLeakScanner()
	leaks.AddCard("4242424242424242", "123")
	leaks.AddCard("5555555555554444", "")
	var all strings.Builder
	for _, sp := range spans {
		all.WriteString(spanText(sp))
	}
	leaks.Scan("spans", []byte(all.String()))
	hits, summary := leaks.Report()
	assert.Empty(t, hits, summary)
	assert.Greater(t, len(spans), 20, "spans were exported")
	t.Log(summary)
}
