package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
)

// TestConfig: -h exits cleanly and a variable that does not parse stops
// vaultd with a message naming it (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, []clitest.BadVar{{Name: "duration without a unit", Key: "OBOL_CVC_TTL", Value: "90"}, {Name: "bool", Key: "OBOL_NO_AUTO_REWRAP", Value: "maybe"}})
}
