package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
)

// TestConfig: -h exits cleanly and a variable that does not parse stops
// vaultd with a message naming it (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, []clitest.BadVar{{"duration without a unit", "OBOL_CVC_TTL", "90"}, {"bool", "OBOL_NO_AUTO_REWRAP", "maybe"}})
}
