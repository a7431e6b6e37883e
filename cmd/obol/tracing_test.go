package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/obolpay/obol/internal/telemetry"
	"github.com/obolpay/obol/internal/testenv"
)

// TestDevTracingSettingRefused: obol dev refuses a tracing setting it does
// not understand, naming the variable.
func TestDevTracingSettingRefused(t *testing.T) {
	t.Setenv("OBOL_TRACING", "zipkin")
	err := run(context.Background(), []string{"dev", "--data-dir", filepath.Join(t.TempDir(), ".obol"), "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, io.Discard)
	require.ErrorIs(t, err, telemetry.ErrConfig)
	require.ErrorContains(t, err, "OBOL_TRACING")
}

// TestDevExportsTracesOverOTLP: obol dev with OTEL_EXPORTER_OTLP_ENDPOINT
// exports over OTLP/HTTP to the collector; the spans of a payment reach it
// at shutdown (the flush), under service.name obol-dev, with the REST edge
// and the vaultd, riskd and ledgerd server spans in the payment's trace;
// the bytes sent hold no test card number; the log line of the payment
// carries the exported trace id.
func TestDevExportsTracesOverOTLP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts obol dev")
	}
	var mu sync.Mutex
	var reqs []*coltracepb.ExportTraceServiceRequest
	var raw bytes.Buffer
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		reqs = append(reqs, &req)
		raw.Write(b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(col.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.URL)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	var logs *testenv.SyncBuffer
	var payID string
	// Registered before obol dev starts, so it runs after obol dev stopped
	// (cleanups run last first): the spans are flushed by then.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, reqs, "the collector received spans")
		services := map[string]bool{}
		byTrace := map[string][]string{}
		for _, req := range reqs {
			for _, rs := range req.ResourceSpans {
				for _, a := range rs.Resource.Attributes {
					if a.Key == "service.name" {
						services[a.Value.GetStringValue()] = true
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, s := range ss.Spans {
						id := hex.EncodeToString(s.TraceId)
						byTrace[id] = append(byTrace[id], s.Name)
					}
				}
			}
		}
		assert.Equal(t, map[string]bool{"obol-dev": true}, services)
		// The trace of the payment: the one holding POST /v1/payments.
		var payTrace string
		for id, names := range byTrace {
			if slices.Contains(names, "POST /v1/payments") {
				payTrace = id
			}
		}
		require.NotEmpty(t, payTrace, "no trace holds POST /v1/payments")
		for _, want := range []string{"obol.vault.v1.VaultService/Detokenize", "obol.risk.v1.RiskService/Evaluate", "obol.ledger.v1.LedgerService/RecordPayment", "acquirer simulator POST"} {
			assert.Contains(t, byTrace[payTrace], want)
		}
		assert.Contains(t, logs.String(), `"trace_id":"`+payTrace+`"`)
		scan := testenv.NewLeakScanner()
		scan.AddCard("4242424242424242", "123")
		scan.Scan("OTLP export", raw.Bytes())
		hits, summary := scan.Report()
		assert.Empty(t, hits, summary)
		assert.NotEmpty(t, payID)
	})
	addrs, l, sk := startDevCapturing(t)
	logs = l
	call := func(url, body string) map[string]any {
		t.Helper()
		req, err := http.NewRequest("POST", url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+sk)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
		require.Equal(t, 200, resp.StatusCode, "%v", m)
		return m
	}
	tok := call("http://"+addrs["vault"]+"/v1/tokens", `{"card":{"number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}}`)["token"].(string)
	payID, _ = call("http://"+addrs["gateway"]+"/v1/payments", `{"token":"`+tok+`","amount":1200,"currency":"usd","capture":true}`)["id"].(string)
}
