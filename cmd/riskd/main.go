// Command riskd is Obol's risk engine (outside PCI scope): CEL rules over a
// PAN-free payment context with Redis velocity features. Settings are flags
// with OBOL_* environment defaults; the service token comes from the
// environment only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/risk/riskd"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("riskd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("riskd", flag.ContinueOnError)
	var cfg riskd.Config
	fs.StringVar(&cfg.RedisURL, "redis-url", cli.Env("OBOL_REDIS_URL", ""), "Redis for velocity counters (OBOL_REDIS_URL)")
	fs.StringVar(&cfg.StateRedisURL, "state-redis-url", cli.Env("OBOL_RISK_STATE_REDIS_URL", ""), "Redis with persistence for rule sets and lists (default: --redis-url)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cli.Env("OBOL_GRPC_ADDR", "127.0.0.1:9091"), "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cli.Env("OBOL_HTTP_ADDR", "127.0.0.1:8081"), "REST listen address")
	fs.StringVar(&cfg.KeyPrefix, "key-prefix", cli.Env("OBOL_RISK_KEY_PREFIX", "obol:risk:"), "prefix of every Redis key (to share a Redis between deployments)")
	fs.StringVar(&cfg.RulesFile, "rules", cli.Env("OBOL_RISK_RULES", ""), "YAML rule set file, hot-reloaded (default: the stored active set, else the shipped defaults)")
	fs.StringVar(&cfg.BINTable, "bin-table", cli.Env("OBOL_RISK_BIN_TABLE", ""), "BIN table CSV (default: the shipped sample)")
	fs.StringVar(&cfg.IPTable, "ip-table", cli.Env("OBOL_RISK_IP_TABLE", ""), "IP-to-country CSV (default: the shipped sample)")
	fs.StringVar(&cfg.DefaultFallback, "fallback", cli.Env("OBOL_RISK_FALLBACK", "review"), "action when Redis is unavailable")
	fallbacks := fs.String("merchant-fallbacks", cli.Env("OBOL_RISK_MERCHANT_FALLBACKS", ""), "per-merchant fallback actions, e.g. mer_a=block,mer_b=review")
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
	if cfg.Edge, err = edge.Edge(*certFile, *keyFile); err != nil {
		return err
	}
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, *certFile != ""); err != nil {
		return err
	}
	cfg.Token = os.Getenv("OBOL_RISK_TOKEN")
	cfg.Fallback = map[string]string{}
	for _, kv := range strings.Split(*fallbacks, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		m, a, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--merchant-fallbacks: %q is not merchant=action", kv)
		}
		cfg.Fallback[m] = a
	}
	cfg.Logger = cli.Logger(*logFormat)
	if *certFile != "" {
		tc, err := cli.ServerTLS(*certFile, *keyFile, *clientCA)
		if err != nil {
			return err
		}
		cfg.GRPCTLS = tc
	} else {
		cfg.Logger.Warn("gRPC is served without TLS (set OBOL_TLS_CERT and OBOL_TLS_KEY in production)")
	}
	in, err := riskd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	cfg.Logger.Info("riskd ready", "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr(), "rule_set", in.Engine.Active().Version)
	return in.Serve(ctx)
}
