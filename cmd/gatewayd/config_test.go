package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
)

// TestConfig: -h exits cleanly and a variable that does not parse stops
// gatewayd with a message naming it (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, []clitest.BadVar{{Name: "duration", Key: "OBOL_ACQUIRER_TIMEOUT", Value: "ten"}, {Name: "bool", Key: "OBOL_TLS_SERVICES", Value: "sure"}})
}
