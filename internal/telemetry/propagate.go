package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/binary"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/obolpay/obol/internal/cardtext"
)

// Propagator is W3C Trace Context restricted to what a caller cannot use
// to smuggle data through Obol: it reads traceparent only (tracestate is
// free text a merchant could fill with anything, so it is neither
// continued, nor exported, nor passed on to vaultd or an acquirer), and it
// ignores a traceparent whose trace or span id holds what looks like a
// card number (the ids are logged with every line): such a request starts
// a new trace.
func Propagator() propagation.TextMapPropagator { return inbound{} }

type inbound struct{}

var w3c = propagation.TraceContext{}

func (inbound) Inject(ctx context.Context, c propagation.TextMapCarrier) { w3c.Inject(ctx, c) }

func (inbound) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	out := w3c.Extract(ctx, parentOnly{c})
	sc := trace.SpanContextFromContext(out)
	if !sc.IsValid() || looksLikeCard(sc.TraceID(), sc.SpanID()) {
		return ctx
	}
	return out
}

func (inbound) Fields() []string { return []string{"traceparent"} }

// parentOnly hides every field but traceparent.
type parentOnly struct{ propagation.TextMapCarrier }

func (p parentOnly) Get(key string) string {
	if key != "traceparent" {
		return ""
	}
	return p.TextMapCarrier.Get(key)
}

func (p parentOnly) Keys() []string { return []string{"traceparent"} }

func looksLikeCard(t trace.TraceID, s trace.SpanID) bool {
	return cardtext.Contains(t.String()) || cardtext.Contains(s.String())
}

// cardFreeIDs generates random trace and span ids (crypto/rand) whose hex
// form never looks like a card number, so that no log line's trace_id
// does either.
type cardFreeIDs struct{}

var _ sdktrace.IDGenerator = cardFreeIDs{}

func (g cardFreeIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	for {
		var t trace.TraceID
		_, _ = rand.Read(t[:])
		if t.IsValid() && !cardtext.Contains(t.String()) {
			return t, g.NewSpanID(ctx, t)
		}
	}
}

func (cardFreeIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	for {
		var s trace.SpanID
		binary.BigEndian.PutUint64(s[:], randUint64())
		if s.IsValid() && !cardtext.Contains(s.String()) {
			return s
		}
	}
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}
