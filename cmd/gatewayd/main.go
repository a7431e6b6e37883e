// Command gatewayd is Obol's payments gateway (PCI zone): merchants charge
// by token; the card is revealed from vaultd (mTLS) only to be forwarded to
// an acquirer. Settings are flags with OBOL_* environment defaults; tokens
// come from the environment only.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/obolpay/obol/internal/cli"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
	"github.com/obolpay/obol/proxy/gatewayd"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("gatewayd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	var cfg gatewayd.Config
	fs.StringVar(&cfg.PostgresURL, "postgres-url", cli.Env("OBOL_GATEWAY_POSTGRES_URL", ""), "gateway database (OBOL_GATEWAY_POSTGRES_URL)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cli.Env("OBOL_GRPC_ADDR", "127.0.0.1:9093"), "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cli.Env("OBOL_HTTP_ADDR", "127.0.0.1:8083"), "REST listen address")
	fs.StringVar(&cfg.VaultAddr, "vault-grpc-addr", cli.Env("OBOL_VAULT_GRPC_ADDR", "127.0.0.1:9090"), "vaultd gRPC address")
	fs.StringVar(&cfg.RiskAddr, "risk-addr", cli.Env("OBOL_RISK_ADDR", "127.0.0.1:9091"), "riskd gRPC address")
	fs.StringVar(&cfg.LedgerAddr, "ledger-addr", cli.Env("OBOL_LEDGER_ADDR", "127.0.0.1:9092"), "ledgerd gRPC address")
	fs.StringVar(&cfg.SimulatorURL, "simulator-url", cli.Env("OBOL_SIMULATOR_URL", ""), "acquirer simulator base URL (https)")
	fs.StringVar(&cfg.StripeURL, "stripe-url", cli.Env("OBOL_STRIPE_URL", ""), "Stripe-compatible API base URL (default https://api.stripe.com when OBOL_STRIPE_SECRET_KEY is set)")
	fs.StringVar(&cfg.DefaultAcquirer, "default-acquirer", cli.Env("OBOL_DEFAULT_ACQUIRER", ""), "connector for payments that name none (default: simulator, or stripe when only it is configured)")
	merchantAcq := fs.String("merchant-acquirers", cli.Env("OBOL_MERCHANT_ACQUIRERS", ""), "per-merchant connectors: mer_a=stripe,mer_b=simulator")
	fs.StringVar(&cfg.RoutesFile, "routes", cli.Env("OBOL_GATEWAY_ROUTES", ""), "route file for POST /v1/forward (YAML, hot-reloaded); /v1/forward is off without it")
	upstreamCA := fs.String("upstream-ca", cli.Env("OBOL_UPSTREAM_CA", ""), "extra CA certificates (PEM) trusted for /v1/forward upstreams, besides the system's")
	fs.DurationVar(&cfg.ForwardTimeout, "forward-timeout", cli.EnvDuration("OBOL_FORWARD_TIMEOUT", 0), "upstream call timeout for /v1/forward (default 20s)")
	fs.DurationVar(&cfg.AcquirerTimeout, "acquirer-timeout", cli.EnvDuration("OBOL_ACQUIRER_TIMEOUT", 0), "acquirer call timeout (default 10s)")
	fs.DurationVar(&cfg.SweepInterval, "sweep-interval", cli.EnvDuration("OBOL_SWEEP_INTERVAL", 0), "how often the ledger outbox is delivered and abandoned payments are resolved (default 10s)")
	fs.DurationVar(&cfg.ProcessingTimeout, "processing-timeout", cli.EnvDuration("OBOL_PROCESSING_TIMEOUT", 0), "age at which a payment still processing counts as abandoned and is reversed (default 2m; longer than any request)")
	fs.BoolVar(&cfg.Reflection, "grpc-reflection", cli.EnvBool("OBOL_GRPC_REFLECTION", false), "enable gRPC reflection")
	cert := fs.String("gateway-cert", cli.Env("OBOL_GATEWAY_CERT", ""), "the gateway's client certificate for vaultd (mTLS)")
	key := fs.String("gateway-key", cli.Env("OBOL_GATEWAY_KEY", ""), "its key")
	ca := fs.String("ca", cli.Env("OBOL_CA", ""), "CA of vaultd's (and the other services') certificates")
	tlsServices := fs.Bool("tls-services", cli.EnvBool("OBOL_TLS_SERVICES", false), "use TLS (with --ca) to riskd, ledgerd and eventsd too")
	eventsAddr := fs.String("events-addr", cli.Env("OBOL_EVENTS_ADDR", ""), "eventsd's internal gRPC address: the merchant events (payment.*, refund.created) are relayed there (with OBOL_EVENTS_TOKEN); without it they wait in the outbox")
	srvCert := fs.String("tls-cert", cli.Env("OBOL_TLS_CERT", ""), "gRPC server certificate (plaintext gRPC without it: development only)")
	srvKey := fs.String("tls-key", cli.Env("OBOL_TLS_KEY", ""), "gRPC server key")
	logFormat := fs.String("log-format", cli.Env("OBOL_LOG_FORMAT", "json"), "json or text")
	fs.StringVar(&cfg.RedisURL, "redis-url", cli.Env("OBOL_REDIS_URL", ""), "Redis for the failed-authentication counters shared by every replica (OBOL_REDIS_URL; without it each replica counts alone)")
	edge := cli.AddEdgeFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Edge, err = edge.Edge(*srvCert, *srvKey); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, *srvCert != ""); err != nil {
		return err
	}
	cfg.RiskToken, cfg.LedgerToken = os.Getenv("OBOL_RISK_TOKEN"), os.Getenv("OBOL_LEDGER_TOKEN")
	cfg.StripeSecretKey = os.Getenv("OBOL_STRIPE_SECRET_KEY")
	if *merchantAcq != "" {
		cfg.MerchantAcquirers = map[string]string{}
		for _, kv := range strings.Split(*merchantAcq, ",") {
			m, a, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || m == "" || a == "" {
				return fmt.Errorf("--merchant-acquirers: %q is not merchant=connector", kv)
			}
			cfg.MerchantAcquirers[m] = a
		}
	}
	cfg.Logger = cli.Logger(*logFormat)
	stopTracing, err := cli.Tracing(ctx, "obol-gatewayd", cfg.Logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	if *cert == "" || *ca == "" {
		return errors.New("--gateway-cert, --gateway-key and --ca are required: vaultd reveals cards only to the gateway's mTLS identity")
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("CA %s: no PEM certificates", *ca)
	}
	c, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		return fmt.Errorf("gateway certificate: %w", err)
	}
	cfg.VaultTLS = &tls.Config{Certificates: []tls.Certificate{c}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	if *tlsServices {
		cfg.RiskTLS, cfg.LedgerTLS = cfg.VaultTLS, cfg.VaultTLS
	}
	cfg.SimulatorTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if *upstreamCA != "" {
		sys, err := x509.SystemCertPool()
		if err != nil || sys == nil {
			sys = x509.NewCertPool()
		}
		b, err := os.ReadFile(*upstreamCA)
		if err != nil {
			return fmt.Errorf("--upstream-ca: %w", err)
		}
		if !sys.AppendCertsFromPEM(b) {
			return fmt.Errorf("--upstream-ca %s: no PEM certificates", *upstreamCA)
		}
		cfg.UpstreamTLS = &tls.Config{RootCAs: sys, MinVersion: tls.VersionTLS12}
	}
	if *srvCert != "" {
		if cfg.GRPCTLS, err = cli.ServerTLS(*srvCert, *srvKey, ""); err != nil {
			return err
		}
	} else {
		cfg.Logger.Warn("gRPC is served without TLS (set OBOL_TLS_CERT and OBOL_TLS_KEY in production)")
	}
	if *eventsAddr != "" {
		if cfg.EventsToken = os.Getenv("OBOL_EVENTS_TOKEN"); cfg.EventsToken == "" {
			return errors.New("--events-addr needs OBOL_EVENTS_TOKEN (eventsd's service token)")
		}
		creds := insecure.NewCredentials()
		if *tlsServices {
			creds = credentials.NewTLS(cfg.VaultTLS)
		}
		conn, err := grpc.NewClient(*eventsAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return fmt.Errorf("--events-addr: %w", err)
		}
		defer conn.Close()
		cfg.Events = eventsv1.NewEventLogServiceClient(conn)
	}
	in, err := gatewayd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("gatewayd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr())
	return in.Serve(ctx)
}
