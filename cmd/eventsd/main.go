// Command eventsd is Obol's event log and webhook service (outside PCI
// scope): producers publish events to it, the gateway forwards the
// merchants' events and webhook-endpoint calls to it, and it delivers
// webhooks signed to the Standard Webhooks specification. Settings are
// flags with OBOL_* environment defaults; the service token and the
// secret-sealing key come from the environment only.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/ledger/events/eventsd"
	"github.com/obolpay/obol/ledger/events/webhook"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("eventsd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eventsd", flag.ContinueOnError)
	var cfg eventsd.Config
	fs.StringVar(&cfg.PostgresURL, "postgres-url", cli.Env("OBOL_EVENTS_POSTGRES_URL", ""), "events database (OBOL_EVENTS_POSTGRES_URL)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cli.Env("OBOL_GRPC_ADDR", "127.0.0.1:9094"), "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cli.Env("OBOL_HTTP_ADDR", "127.0.0.1:8084"), "health and metrics listen address")
	allow := fs.String("webhook-allow-cidrs", cli.Env("OBOL_WEBHOOK_ALLOW_CIDRS", ""), "comma-separated CIDR prefixes webhooks may reach although not public (e.g. 10.1.0.0/16)")
	concurrency := fs.Int64("webhook-concurrency", cli.EnvInt64("OBOL_WEBHOOK_CONCURRENCY", 64), "webhook attempts in flight")
	fs.DurationVar(&cfg.SendTimeout, "webhook-timeout", cli.EnvDuration("OBOL_WEBHOOK_TIMEOUT", webhook.DefaultTimeout), "timeout of one webhook attempt")
	webhookCA := fs.String("webhook-ca", cli.Env("OBOL_WEBHOOK_CA", ""), "PEM file of CA certificates trusted for webhook endpoints besides the system roots")
	fs.BoolVar(&cfg.Reflection, "grpc-reflection", cli.EnvBool("OBOL_GRPC_REFLECTION", false), "enable gRPC reflection")
	certFile := fs.String("tls-cert", cli.Env("OBOL_TLS_CERT", ""), "gRPC server certificate (plaintext gRPC without it: development only)")
	keyFile := fs.String("tls-key", cli.Env("OBOL_TLS_KEY", ""), "gRPC server key")
	clientCA := fs.String("client-ca", cli.Env("OBOL_CLIENT_CA", ""), "CA of client certificates; when set, a client certificate is required")
	logFormat := fs.String("log-format", cli.Env("OBOL_LOG_FORMAT", "json"), "json or text")
	edge := cli.AddEdgeFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.AllowCIDRs, err = webhook.ParseAllowCIDRs(*allow); err != nil {
		return err
	}
	if *concurrency < 1 || *concurrency > 4096 {
		return errors.New("OBOL_WEBHOOK_CONCURRENCY must be 1-4096")
	}
	cfg.Concurrency = int(*concurrency)
	if cfg.SendTimeout <= 0 || cfg.SendTimeout > webhook.DefaultTimeout*3 {
		return errors.New("OBOL_WEBHOOK_TIMEOUT must be positive and at most 30s")
	}
	if cfg.Edge, err = edge.Edge(*certFile, *keyFile); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, *certFile != ""); err != nil {
		return err
	}
	if *webhookCA != "" {
		pem, err := os.ReadFile(*webhookCA)
		if err != nil {
			return fmt.Errorf("OBOL_WEBHOOK_CA: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return errors.New("OBOL_WEBHOOK_CA holds no PEM certificate")
		}
		cfg.WebhookTLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	cfg.Token = os.Getenv("OBOL_EVENTS_TOKEN")
	if k := os.Getenv("OBOL_EVENTS_SEAL_KEY"); k != "" {
		if cfg.SealKey, err = base64.StdEncoding.DecodeString(k); err != nil || len(cfg.SealKey) != 32 {
			return errors.New("OBOL_EVENTS_SEAL_KEY must be 32 bytes in base64 (openssl rand -base64 32)")
		}
	}
	cfg.Logger = cli.Logger(*logFormat)
	stopTracing, err := cli.Tracing(ctx, "obol-eventsd", cfg.Logger)
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
	in, err := eventsd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("eventsd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr())
	return in.Serve(ctx)
}
