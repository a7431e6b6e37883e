// Command gatewayd is Obol's payments gateway (PCI zone): merchants charge
// by token; the card is revealed from vaultd (mTLS) only to be forwarded to
// an acquirer. Its settings are config.Gatewayd (flags override OBOL_* variables;
// tokens come from the environment only; see deploy/CONFIG.md).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/proxy/gatewayd"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("gatewayd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	var c config.Gatewayd
	if err := cli.Parse(pflag.NewFlagSet("gatewayd", pflag.ContinueOnError), &c, args); err != nil {
		return err
	}
	cfg := gatewayd.Config{PostgresURL: c.PostgresURL, Migrate: migrate.Mode(c.Migrate), RedisURL: c.RedisURL, GRPCAddr: c.GRPCAddr, HTTPAddr: c.HTTPAddr,
		VaultAddr: c.VaultAddr, RiskAddr: c.RiskAddr, RiskToken: c.RiskToken, LedgerAddr: c.LedgerAddr, LedgerToken: c.LedgerToken, EventsAddr: c.EventsAddr, EventsToken: c.EventsToken,
		SimulatorURL: c.SimulatorURL, StripeURL: c.StripeURL, StripeSecretKey: c.StripeSecretKey, DefaultAcquirer: c.DefaultAcquirer,
		MerchantAcquirers: c.MerchantAcquirers, RoutesFile: c.RoutesFile, ForwardTimeout: c.ForwardTimeout, AcquirerTimeout: c.AcquirerTimeout,
		SweepInterval: c.SweepInterval, ProcessingTimeout: c.ProcessingTimeout, Reflection: c.Reflection}
	var err error
	if cfg.Edge, err = c.EdgeConfig.Edge(cli.DaemonVars("GATEWAYD"), c.TLSCert, c.TLSKey); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, c.TLSCert != ""); err != nil {
		return err
	}
	var stopTracing func()
	if cfg.Logger, stopTracing, err = c.Start(ctx, "obol-gatewayd"); err != nil {
		return err
	}
	defer stopTracing()
	if c.GatewayCert == "" || c.CA == "" {
		return errors.New("--gateway-cert, --gateway-key and --ca are required: vaultd reveals cards only to the gateway's mTLS identity")
	}
	pool, err := cli.CertPool("CA", c.CA, false)
	if err != nil {
		return err
	}
	gc, err := tls.LoadX509KeyPair(c.GatewayCert, c.GatewayKey)
	if err != nil {
		return fmt.Errorf("gateway certificate: %w", err)
	}
	cfg.VaultTLS = &tls.Config{Certificates: []tls.Certificate{gc}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c.TLSServices {
		cfg.RiskTLS, cfg.LedgerTLS, cfg.EventsTLS = cfg.VaultTLS, cfg.VaultTLS, cfg.VaultTLS
	}
	if cfg.SimulatorTLS, err = simulatorTLS(c.CA); err != nil {
		return err
	}
	if c.UpstreamCA != "" {
		sys, err := cli.CertPool("--upstream-ca", c.UpstreamCA, true)
		if err != nil {
			return err
		}
		cfg.UpstreamTLS = &tls.Config{RootCAs: sys, MinVersion: tls.VersionTLS12}
	}
	if cfg.GRPCTLS, err = c.GRPCTLS(cfg.Logger, cli.DaemonVars("GATEWAYD"), ""); err != nil {
		return err
	}
	in, err := gatewayd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("gatewayd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr())
	return in.Serve(ctx)
}

// simulatorTLS is how the simulator connector checks the acquirer
// simulator's certificate: the system's roots (SSL_CERT_FILE and
// SSL_CERT_DIR included, as for every other acquirer) plus the services'
// CA (--ca). It trusted --ca alone, so a simulator whose CA was added
// with SSL_CERT_DIR (deploy/kubernetes/overlays/dev) was refused.
func simulatorTLS(ca string) (*tls.Config, error) {
	pool, err := cli.CertPool("CA", ca, true)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
