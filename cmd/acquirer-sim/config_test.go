package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly and lists every variable, and a value that
// does not parse stops the simulator with a message naming it.
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.AcquirerSim{}, "", []clitest.BadVar{
		{Name: "log format", Key: "OBOL_LOG_FORMAT", Value: "yaml"},
	})
}
