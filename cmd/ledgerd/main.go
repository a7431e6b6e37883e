// Command ledgerd is Obol's ledger (outside PCI scope): a double-entry
// journal on PostgreSQL with the payments chart of accounts, payouts and
// settlement reconciliation. Its settings are config.Ledgerd (flags
// override OBOL_* variables; the service token comes from the environment
// only; see deploy/CONFIG.md).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/ledger/ledgerd"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("ledgerd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	var c config.Ledgerd
	if err := cli.Parse(pflag.NewFlagSet("ledgerd", pflag.ContinueOnError), &c, args); err != nil {
		return err
	}
	cfg := ledgerd.Config{PostgresURL: c.PostgresURL, Migrate: migrate.Mode(c.Migrate), GRPCAddr: c.GRPCAddr, HTTPAddr: c.HTTPAddr, Settings: c.Settings, Reflection: c.Reflection, Token: c.Token}
	var err error
	if cfg.Edge, err = c.EdgeConfig.Edge(cli.DaemonVars("LEDGERD"), c.TLSCert, c.TLSKey); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, c.TLSCert != ""); err != nil {
		return err
	}
	var stopTracing func()
	if cfg.Logger, stopTracing, err = c.Start(ctx, "obol-ledgerd"); err != nil {
		return err
	}
	defer stopTracing()
	if cfg.GRPCTLS, err = c.GRPCTLS(cfg.Logger, cli.DaemonVars("LEDGERD"), c.ClientCA); err != nil {
		return err
	}
	if c.EventsAddr != "" {
		if cfg.EventsToken = c.EventsToken; cfg.EventsToken == "" {
			return errors.New("--events-addr needs OBOL_EVENTS_TOKEN (eventsd's service token)")
		}
		creds := insecure.NewCredentials()
		if c.EventsCA != "" {
			pool, err := cli.CertPool("events CA", c.EventsCA, false)
			if err != nil {
				return err
			}
			creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		} else {
			cfg.Logger.Warn("events are relayed to eventsd without TLS (set OBOL_EVENTS_CA in production)")
		}
		conn, err := grpc.NewClient(c.EventsAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return fmt.Errorf("--events-addr: %w", err)
		}
		defer conn.Close()
		cfg.Events = eventsv1.NewEventLogServiceClient(conn)
	}
	in, err := ledgerd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("ledgerd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr())
	return in.Serve(ctx)
}
