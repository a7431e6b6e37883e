package main

import (
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly and lists every variable (the tokens too,
// never their values), and a value that does not parse stops gatewayd
// with a message naming it and the accepted form (never silently the
// default).
func TestConfig(t *testing.T) {
	clitest.Config(t, run, &config.Gatewayd{}, "OBOL_GATEWAYD_", []clitest.BadVar{
		{Name: "duration", Key: "OBOL_ACQUIRER_TIMEOUT", Value: "ten"},
		{Name: "duration in words", Key: "OBOL_SWEEP_INTERVAL", Value: "soon"},
		{Name: "bool", Key: "OBOL_TLS_SERVICES", Value: "sure"},
		{Name: "pairs without a connector", Key: "OBOL_MERCHANT_ACQUIRERS", Value: "mer_abc"},
	})
}
