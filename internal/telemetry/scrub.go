package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/obolpay/obol/internal/cardtext"
)

// droppedKeys are attributes that hold a raw URL, path or query: Obol's
// own spans never set them (they name route templates and hosts), and
// ScrubExporter drops them should a library add one.
var droppedKeys = map[attribute.Key]bool{
	"url.full": true, "url.path": true, "url.query": true, "url.original": true,
	"http.url": true, "http.target": true,
}

// ScrubExporter wraps an exporter as a second line of defence: before a
// span leaves the process, attributes holding a raw URL, path or query are
// dropped, the trace state is dropped, and every run of 12 or more digits (single spaces or dashes
// between them allowed) in the span's name, string attributes, events and
// status description becomes "[digits]". Obol's instrumentation puts no
// card data in spans to begin with; this keeps it so if a dependency's
// error message or attribute ever quoted one.
func ScrubExporter(next sdktrace.SpanExporter) sdktrace.SpanExporter {
	return scrubExporter{next}
}

type scrubExporter struct{ sdktrace.SpanExporter }

func (e scrubExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = scrubbedSpan{s}
	}
	return e.SpanExporter.ExportSpans(ctx, out)
}

type scrubbedSpan struct{ sdktrace.ReadOnlySpan }

func (s scrubbedSpan) Name() string { return ScrubDigits(s.ReadOnlySpan.Name()) }

// SpanContext and Parent drop the trace state (Propagator never takes one
// from a caller; this holds should anything else set one).
func (s scrubbedSpan) SpanContext() trace.SpanContext {
	return s.ReadOnlySpan.SpanContext().WithTraceState(trace.TraceState{})
}

func (s scrubbedSpan) Parent() trace.SpanContext {
	return s.ReadOnlySpan.Parent().WithTraceState(trace.TraceState{})
}

func (s scrubbedSpan) Attributes() []attribute.KeyValue {
	return scrubAttrs(s.ReadOnlySpan.Attributes())
}

func (s scrubbedSpan) Events() []sdktrace.Event {
	evs := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(evs))
	for i, e := range evs {
		e.Name = ScrubDigits(e.Name)
		e.Attributes = scrubAttrs(e.Attributes)
		out[i] = e
	}
	return out
}

func (s scrubbedSpan) Links() []sdktrace.Link {
	ls := s.ReadOnlySpan.Links()
	out := make([]sdktrace.Link, len(ls))
	for i, l := range ls {
		l.Attributes = scrubAttrs(l.Attributes)
		out[i] = l
	}
	return out
}

func (s scrubbedSpan) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	st.Description = ScrubDigits(st.Description)
	return st
}

func scrubAttrs(as []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(as))
	for _, a := range as {
		if droppedKeys[a.Key] {
			continue
		}
		switch a.Value.Type() {
		case attribute.STRING:
			a.Value = attribute.StringValue(ScrubDigits(a.Value.AsString()))
		case attribute.STRINGSLICE:
			ss := a.Value.AsStringSlice()
			for i := range ss {
				ss[i] = ScrubDigits(ss[i])
			}
			a.Value = attribute.StringSliceValue(ss)
		}
		out = append(out, a)
	}
	return out
}

// ScrubDigits masks card-number-shaped digit runs in a span's text, as the
// log scrubber does (cardtext.Mask).
func ScrubDigits(s string) string { return cardtext.Mask(s) }
