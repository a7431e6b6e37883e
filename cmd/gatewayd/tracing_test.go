package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
)

// TestTracingSettingRefused: a tracing setting the daemon does not
// understand stops the start with an error naming the variable, never
// silently ignored.
func TestTracingSettingRefused(t *testing.T) { clitest.Tracing(t, run) }
