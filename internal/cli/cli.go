// Package cli holds the small helpers Obol's binaries share: the strict
// config loader (load.go: one struct per binary, flags over OBOL_*
// variables), a signal-aware context, the logger and TLS. PAN-free.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/telemetry"
)

// ErrBadEnv marks a start-up refusal for an environment variable that does
// not parse.
var ErrBadEnv = errors.New("bad environment variable")

// SignalContext is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// UsageOutput is where -h/--help prints (stderr; tests capture it).
var UsageOutput io.Writer = os.Stderr

// LogOutput is where Logger writes (stderr; tests capture it).
var LogOutput io.Writer = os.Stderr

// Logger returns a JSON (production) or text (dev) slog logger on LogOutput.
func Logger(format string) *slog.Logger {
	if format == "text" {
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(LogOutput, nil)))
	}
	return slog.New(telemetry.LogHandler(slog.NewJSONHandler(LogOutput, nil)))
}

// Tracing sets up OpenTelemetry tracing from the environment (off unless
// OTEL_EXPORTER_OTLP_ENDPOINT or OBOL_TRACING=otlp is set; see
// internal/telemetry) with service as the default service.name. The
// returned stop flushes buffered spans (up to 5 s); defer it.
func Tracing(ctx context.Context, service string, log *slog.Logger) (stop func(), err error) {
	shutdown, err := telemetry.Setup(ctx, service, log)
	if err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("tracing: flushing spans at shutdown failed", "err", err)
		}
	}, nil
}

// ServerTLS loads a service's TLS certificate; with clientCA, clients must
// present a certificate it signed (mutual TLS).
func ServerTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := CertPool("client CA", clientCA, false)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// CertPool reads the PEM certificates in file, added to the system's roots
// when system is set; what names the file in the errors.
func CertPool(what, file string, system bool) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if system {
		if sys, err := x509.SystemCertPool(); err == nil && sys != nil {
			pool = sys
		}
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificates", what, file)
	}
	return pool, nil
}

// Exit ends a binary's main: nothing on success, status 0 after -h/--help
// (the usage has been printed), otherwise the error on stderr and status 1.
func Exit(name string, err error) {
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp), errors.Is(err, pflag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
