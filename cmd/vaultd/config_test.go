package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly and lists every variable, and a value that
// does not parse stops vaultd with a message naming it and the accepted
// form (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.Vaultd{}, "OBOL_VAULTD_", []clitest.BadVar{
		{Name: "duration without a unit", Key: "OBOL_CVC_TTL", Value: "90"},
		{Name: "negative duration", Key: "OBOL_DEK_MAX_AGE", Value: "-1h"},
		{Name: "integer", Key: "OBOL_DEK_MAX_USES", Value: "lots"},
		{Name: "bool", Key: "OBOL_NO_AUTO_REWRAP", Value: "maybe"},
	})
}
