// Command eventsd is Obol's event log and webhook service (outside PCI
// scope): producers publish events to it, the gateway forwards the
// merchants' events and webhook-endpoint calls to it, and it delivers
// webhooks signed to the Standard Webhooks specification. Its settings are
// config.Eventsd (flags override OBOL_* variables; the service token and
// the secret-sealing key come from the environment only; see
// deploy/CONFIG.md).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/ledger/events/eventsd"
	"github.com/obolpay/obol/ledger/events/webhook"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("eventsd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	var c config.Eventsd
	if err := cli.Parse(pflag.NewFlagSet("eventsd", pflag.ContinueOnError), &c, args); err != nil {
		return err
	}
	cfg := eventsd.Config{PostgresURL: c.PostgresURL, Migrate: migrate.Mode(c.Migrate), GRPCAddr: c.GRPCAddr, HTTPAddr: c.HTTPAddr, Token: c.Token, Reflection: c.Reflection,
		SendTimeout: c.WebhookTimeout, Concurrency: c.WebhookConcurrency}
	var err error
	if cfg.AllowCIDRs, err = webhook.ParseAllowCIDRs(c.WebhookAllowCIDRs); err != nil {
		return err
	}
	if c.WebhookConcurrency > 4096 {
		return errors.New("OBOL_WEBHOOK_CONCURRENCY (--webhook-concurrency) must be at most 4096")
	}
	if c.WebhookTimeout > 3*webhook.DefaultTimeout {
		return errors.New("OBOL_WEBHOOK_TIMEOUT (--webhook-timeout) must be at most 30s")
	}
	if c.SealKey != "" {
		if cfg.SealKey, err = base64.StdEncoding.DecodeString(c.SealKey); err != nil || len(cfg.SealKey) != 32 {
			return errors.New("OBOL_EVENTS_SEAL_KEY must be 32 bytes in base64 (openssl rand -base64 32)")
		}
	}
	if c.WebhookCA != "" {
		pem, err := os.ReadFile(c.WebhookCA)
		if err != nil {
			return fmt.Errorf("OBOL_WEBHOOK_CA: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return errors.New("OBOL_WEBHOOK_CA holds no PEM certificate")
		}
		cfg.WebhookTLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	if cfg.Edge, err = c.EdgeConfig.Edge(cli.DaemonVars("EVENTSD"), c.TLSCert, c.TLSKey); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, c.TLSCert != ""); err != nil {
		return err
	}
	var stopTracing func()
	if cfg.Logger, stopTracing, err = c.Start(ctx, "obol-eventsd"); err != nil {
		return err
	}
	defer stopTracing()
	if cfg.GRPCTLS, err = c.GRPCTLS(cfg.Logger, cli.DaemonVars("EVENTSD"), c.ClientCA); err != nil {
		return err
	}
	in, err := eventsd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("eventsd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr())
	return in.Serve(ctx)
}
