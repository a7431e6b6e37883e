// Command ledgerd is Obol's ledger (outside PCI scope): a double-entry
// journal on PostgreSQL with the payments chart of accounts, payouts and
// settlement reconciliation. Settings are flags with OBOL_* environment
// defaults; the service token comes from the environment only.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/ledger/ledgerd"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("ledgerd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ledgerd", flag.ContinueOnError)
	var cfg ledgerd.Config
	fs.StringVar(&cfg.PostgresURL, "postgres-url", cli.Env("OBOL_LEDGER_POSTGRES_URL", ""), "ledger database (OBOL_LEDGER_POSTGRES_URL)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cli.Env("OBOL_GRPC_ADDR", "127.0.0.1:9092"), "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cli.Env("OBOL_HTTP_ADDR", "127.0.0.1:8082"), "REST listen address")
	fs.StringVar(&cfg.Settings, "settings", cli.Env("OBOL_LEDGER_SETTINGS", ""), "YAML file of merchant fees and payout terms (default: 2.9% + 30, daily, T+2)")
	fs.BoolVar(&cfg.Reflection, "grpc-reflection", cli.EnvBool("OBOL_GRPC_REFLECTION", false), "enable gRPC reflection")
	certFile := fs.String("tls-cert", cli.Env("OBOL_TLS_CERT", ""), "gRPC server certificate (plaintext gRPC without it: development only)")
	keyFile := fs.String("tls-key", cli.Env("OBOL_TLS_KEY", ""), "gRPC server key")
	clientCA := fs.String("client-ca", cli.Env("OBOL_CLIENT_CA", ""), "CA of client certificates; when set, a client certificate is required")
	logFormat := fs.String("log-format", cli.Env("OBOL_LOG_FORMAT", "json"), "json or text")
	eventsAddr := fs.String("events-addr", cli.Env("OBOL_EVENTS_ADDR", ""), "eventsd's internal gRPC address: the ledger's events (disputes, payouts, settlements) are relayed there (with OBOL_EVENTS_TOKEN); without it they wait in the outbox")
	eventsCA := fs.String("events-ca", cli.Env("OBOL_EVENTS_CA", ""), "CA of eventsd's certificate (plaintext to eventsd without it: development only)")
	edge := cli.AddEdgeFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Edge, err = edge.Edge(*certFile, *keyFile); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, *certFile != ""); err != nil {
		return err
	}
	cfg.Token = os.Getenv("OBOL_LEDGER_TOKEN")
	cfg.Logger = cli.Logger(*logFormat)
	stopTracing, err := cli.Tracing(ctx, "obol-ledgerd", cfg.Logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	if *certFile != "" {
		tc, err := cli.ServerTLS(*certFile, *keyFile, *clientCA)
		if err != nil {
			return err
		}
		cfg.GRPCTLS = tc
	} else {
		cfg.Logger.Warn("gRPC is served without TLS (set OBOL_TLS_CERT and OBOL_TLS_KEY in production)")
	}
	if *eventsAddr != "" {
		cfg.EventsToken = os.Getenv("OBOL_EVENTS_TOKEN")
		if cfg.EventsToken == "" {
			return errors.New("--events-addr needs OBOL_EVENTS_TOKEN (eventsd's service token)")
		}
		creds := insecure.NewCredentials()
		if *eventsCA != "" {
			pem, err := os.ReadFile(*eventsCA)
			if err != nil {
				return fmt.Errorf("events CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("events CA %s: no PEM certificates", *eventsCA)
			}
			creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		} else {
			cfg.Logger.Warn("events are relayed to eventsd without TLS (set OBOL_EVENTS_CA in production)")
		}
		conn, err := grpc.NewClient(*eventsAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return fmt.Errorf("events-addr: %w", err)
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
