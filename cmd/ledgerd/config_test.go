package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly and lists every variable, and a value that
// does not parse stops ledgerd with a message naming it and the accepted
// form (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.Ledgerd{}, "OBOL_LEDGERD_", []clitest.BadVar{
		{Name: "bool", Key: "OBOL_LEDGERD_GRPC_REFLECTION", Value: "on-please"},
	})
}
