package main

import (
	"context"
	"testing"

	"github.com/obolpay/obol/internal/cli/clitest"
	"github.com/obolpay/obol/internal/cli/config"
)

// TestConfig: -h exits cleanly, and a bad flag value (e.g. --suite vaults,
// --duration 10) stops the load tool with a message naming it.
func TestConfig(t *testing.T) {
	clitest.Config(t, func(_ context.Context, args []string) error { _, err := parse(args); return err }, &config.Load{}, "", nil)
}
