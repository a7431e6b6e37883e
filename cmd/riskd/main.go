// Command riskd is Obol's risk engine (outside PCI scope): CEL rules over a
// PAN-free payment context with Redis velocity features. Its settings are
// config.Riskd (flags override OBOL_* variables; the service token comes
// from the environment only; see deploy/CONFIG.md).
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/risk/riskd"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("riskd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	var c config.Riskd
	if err := cli.Parse(pflag.NewFlagSet("riskd", pflag.ContinueOnError), &c, args); err != nil {
		return err
	}
	cfg := riskd.Config{RedisURL: c.RedisURL, StateRedisURL: c.StateRedisURL, GRPCAddr: c.GRPCAddr, HTTPAddr: c.HTTPAddr, KeyPrefix: c.KeyPrefix,
		RulesFile: c.RulesFile, BINTable: c.BINTable, IPTable: c.IPTable, DefaultFallback: c.DefaultFallback, Reflection: c.Reflection, Token: c.Token,
		Fallback: map[string]string{}}
	for m, a := range c.MerchantFallbacks {
		cfg.Fallback[m] = a
	}
	var err error
	if cfg.Edge, err = c.EdgeConfig.Edge(cli.DaemonVars("RISKD"), c.TLSCert, c.TLSKey); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, c.TLSCert != ""); err != nil {
		return err
	}
	var stopTracing func()
	if cfg.Logger, stopTracing, err = c.Start(ctx, "obol-riskd"); err != nil {
		return err
	}
	defer stopTracing()
	if cfg.GRPCTLS, err = c.GRPCTLS(cfg.Logger, cli.DaemonVars("RISKD"), c.ClientCA); err != nil {
		return err
	}
	in, err := riskd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("riskd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr(), "rule_set", in.Engine.Active().Version)
	return in.Serve(ctx)
}
