package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/telemetry"
)

// TestTracingSettingRefused: a tracing setting the daemon does not
// understand stops the start with an error naming the variable, never
// silently ignored.
func TestTracingSettingRefused(t *testing.T) {
	for _, c := range []struct{ name, key, value string }{
		{"unknown mode", "OBOL_TRACING", "zipkin"},
		{"unsupported protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.key, c.value)
			err := run(context.Background(), []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"})
			require.ErrorIs(t, err, telemetry.ErrConfig)
			require.ErrorContains(t, err, c.key)
		})
	}
}
