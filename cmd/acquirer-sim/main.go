// Command acquirer-sim serves Obol's acquirer simulator over HTTPS: outcomes
// by test card as in proxy/simulator/TESTCARDS.md (approvals, declines, a 5xx, a slow card,
// a dispute), stateful captures and refunds, and settlement reports. Its
// counters (operations by outcome, idempotent replays per key) are served
// on GET /metrics (Prometheus) and GET /v1/stats (JSON).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/devpki"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/proxy/simulator"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("acquirer-sim", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	var c config.AcquirerSim
	if err := cli.Parse(pflag.NewFlagSet("acquirer-sim", pflag.ContinueOnError), &c, args); err != nil {
		return err
	}
	log := cli.Logger(c.LogFormat)
	config.WarnUnknown(log)
	var cfg *tls.Config
	if c.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return err
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	} else {
		pki, err := devpki.Ensure(c.PKIDir)
		if err != nil {
			return err
		}
		if cfg, err = pki.ServerTLS(); err != nil {
			return err
		}
		cfg.ClientAuth = tls.NoClientCert
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	sim := simulator.New(simulator.Config{SlowDelay: c.SlowDelay, Logger: log})
	srv := &http.Server{Handler: handler(sim), TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second, ErrorLog: serve.ErrorLog(log)}
	log.Info("acquirer simulator listening", "addr", "https://"+ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// handler serves the simulator and its Prometheus /metrics.
func handler(sim *simulator.Simulator) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(sim.Collector(), collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", sim)
	return mux
}
