// Command acquirer-sim serves Obol's acquirer simulator over HTTPS: outcomes
// by test card as in proxy/simulator/TESTCARDS.md (approvals, declines, a 5xx, a slow card,
// a dispute), stateful captures and refunds, and settlement reports.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/obolpay/obol/internal/cli"
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
	fs := flag.NewFlagSet("acquirer-sim", flag.ContinueOnError)
	addr := fs.String("addr", cli.Env("OBOL_SIM_ADDR", "127.0.0.1:8443"), "HTTPS listen address")
	certFile := fs.String("tls-cert", cli.Env("OBOL_SIM_TLS_CERT", ""), "server certificate (default: a dev certificate in --pki-dir)")
	keyFile := fs.String("tls-key", cli.Env("OBOL_SIM_TLS_KEY", ""), "server key")
	pkiDir := fs.String("pki-dir", "./.obol/tls", "where the dev certificate lives (created if missing)")
	slow := fs.Duration("slow-delay", 30*time.Second, "how long the slow test card takes")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log := cli.Logger(*logFormat)
	var cfg *tls.Config
	if *certFile != "" {
		c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return err
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	} else {
		pki, err := devpki.Ensure(*pkiDir)
		if err != nil {
			return err
		}
		if cfg, err = pki.ServerTLS(); err != nil {
			return err
		}
		cfg.ClientAuth = tls.NoClientCert
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: simulator.New(simulator.Config{SlowDelay: *slow, Logger: log}), TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second, ErrorLog: serve.ErrorLog(log)}
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
