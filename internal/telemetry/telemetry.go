// Package telemetry sets up OpenTelemetry tracing for an Obol daemon: the
// global TracerProvider (off by default; an OTLP/HTTP exporter when
// configured), the W3C Trace Context propagator, a slog handler that adds
// trace_id and span_id to every log record, and an HTTP client transport
// whose spans name the destination host only. PAN-free: nothing here reads
// a request body, path or query, and no span it makes carries one.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables read by Setup (besides the standard OTEL_* ones the
// OTLP exporter and the SDK read themselves: OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES…).
const (
	EnvTracing        = "OBOL_TRACING"
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvServiceName    = "OTEL_SERVICE_NAME"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
)

// ErrConfig marks a tracing setting that is not understood.
var ErrConfig = errors.New("tracing configuration")

// Mode is what Setup decided from the environment.
type Mode string

// The modes.
const (
	Off  Mode = "off"
	OTLP Mode = "otlp"
)

// ParseMode decides the mode from the environment (getenv: os.Getenv in
// production). OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turns
// tracing off; otherwise OBOL_TRACING is "", "off" or "otlp", and with it
// empty tracing is on exactly when an OTLP endpoint variable is set. An
// unknown value, an OTLP protocol other than http/protobuf or a traces
// exporter other than otlp is an error naming the variable, never
// silently ignored, and never repeating the value (a secret may have been
// pasted into the wrong variable).
func ParseMode(getenv func(string) string) (Mode, error) {
	if v := getenv(EnvSDKDisabled); v != "" {
		switch strings.ToLower(v) {
		case "true":
			return Off, nil
		case "false":
		default:
			return Off, fmt.Errorf("%w: %s: the value does not parse; want true or false", ErrConfig, EnvSDKDisabled)
		}
	}
	for _, v := range []string{EnvProtocol, EnvTracesProtocol} {
		if p := getenv(v); p != "" && p != "http/protobuf" {
			return Off, fmt.Errorf("%w: %s: only http/protobuf is supported", ErrConfig, v)
		}
	}
	switch e := getenv(EnvTracesExporter); e {
	case "", "otlp":
	case "none":
		return Off, nil
	default:
		return Off, fmt.Errorf("%w: %s: only otlp (or none) is supported", ErrConfig, EnvTracesExporter)
	}
	switch m := strings.ToLower(strings.TrimSpace(getenv(EnvTracing))); m {
	case "otlp":
		return OTLP, nil
	case "off", "false", "none":
		return Off, nil
	case "":
		if getenv(EnvEndpoint) != "" || getenv(EnvTracesEndpoint) != "" {
			return OTLP, nil
		}
		return Off, nil
	default:
		return Off, fmt.Errorf("%w: %s: the value does not parse; want off or otlp", ErrConfig, EnvTracing)
	}
}

// Setup installs the W3C Trace Context propagator (always: an incoming
// traceparent is passed on and logged even with tracing off; see
// Propagator) and, when the environment turns tracing on, a TracerProvider
// exporting over OTLP/HTTP with service.name from OTEL_SERVICE_NAME or
// service. The returned shutdown flushes spans still buffered; call it
// once at exit.
func Setup(ctx context.Context, service string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator())
	mode, err := ParseMode(os.Getenv)
	if err != nil {
		return nil, err
	}
	if mode == Off {
		if log != nil && (os.Getenv(EnvEndpoint) != "" || os.Getenv(EnvTracesEndpoint) != "") {
			log.Info("tracing off although an OTLP endpoint is set (OBOL_TRACING, OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER says so)")
		}
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	tp, err := NewProvider(ctx, service, sdktrace.WithBatcher(ScrubExporter(exp)))
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(tp)
	if log != nil {
		log.Info("tracing on: OTLP/HTTP exporter", "service", serviceName(service))
	}
	return tp.Shutdown, nil
}

func serviceName(def string) string {
	if s := os.Getenv(EnvServiceName); s != "" {
		return s
	}
	return def
}

// NewProvider is a TracerProvider for service (OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override) with opts, e.g. an exporter; tests
// install one with an in-memory exporter.
func NewProvider(ctx context.Context, service string, opts ...sdktrace.TracerProviderOption) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", service)), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithIDGenerator(cardFreeIDs{})}, opts...)...), nil
}
