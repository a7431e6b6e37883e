package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/telemetry"
)

// TestDevTracingSettingRefused: obol dev refuses a tracing setting it does
// not understand, naming the variable.
func TestDevTracingSettingRefused(t *testing.T) {
	t.Setenv("OBOL_TRACING", "zipkin")
	err := run(context.Background(), []string{"dev", "--data-dir", filepath.Join(t.TempDir(), ".obol"), "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, io.Discard)
	require.ErrorIs(t, err, telemetry.ErrConfig)
	require.ErrorContains(t, err, "OBOL_TRACING")
}
