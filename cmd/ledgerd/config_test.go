package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
)

// TestConfig: -h exits cleanly and a variable that does not parse stops
// ledgerd with a message naming it (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, []clitest.BadVar{{Name: "bool", Key: "OBOL_GRPC_REFLECTION", Value: "on-please"}})
}
