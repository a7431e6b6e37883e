package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly and lists every variable, and a value that
// does not parse stops riskd with a message naming it and the accepted
// form (never silently the default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.Riskd{}, "OBOL_RISKD_", []clitest.BadVar{
		{Name: "bool", Key: "OBOL_RISKD_GRPC_REFLECTION", Value: "on-please"},
		{Name: "pairs without an action", Key: "OBOL_RISK_MERCHANT_FALLBACKS", Value: "mer_abc"},
	})
}
