// Package cli holds the small helpers Obol's binaries share: environment
// defaults for flags, a signal-aware context, and the logger. PAN-free.
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/telemetry"
)

// Env returns the environment variable or def.
func Env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// EnvDuration returns a duration from the environment or def. A value that
// does not parse is recorded for Parse to refuse (never replaced by def).
func EnvDuration(key string, def time.Duration) time.Duration {
	if v := os.Getenv(key); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			badEnv(key, "a duration with a unit, e.g. 30s, 15m or 1h")
			return def
		}
		return d
	}
	return def
}

// EnvBool returns a bool from the environment or def. A value that does
// not parse is recorded for Parse to refuse.
func EnvBool(key string, def bool) bool {
	if v := os.Getenv(key); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			badEnv(key, "true or false")
			return def
		}
		return b
	}
	return def
}

// envErrs are the OBOL_* variables whose values did not parse, in the order
// they were read.
var (
	envMu   sync.Mutex
	envErrs []string
)

// badEnv records a variable whose value does not parse. The value itself
// is not repeated: it may be a secret pasted into the wrong variable.
func badEnv(key, want string) {
	envMu.Lock()
	defer envMu.Unlock()
	envErrs = append(envErrs, fmt.Sprintf("%s: the value does not parse; want %s", key, want))
}

// ErrBadEnv marks a start-up refusal for an environment variable that does
// not parse.
var ErrBadEnv = errors.New("bad environment variable")

// EnvError returns the variables read so far whose values did not parse,
// as one error naming each and the accepted form (nil when all parsed),
// and forgets them.
func EnvError() error {
	envMu.Lock()
	defer envMu.Unlock()
	if len(envErrs) == 0 {
		return nil
	}
	err := fmt.Errorf("%w: %s", ErrBadEnv, strings.Join(envErrs, "; "))
	envErrs = nil
	return err
}

// ParseStd parses a standard-library flag set and then refuses any OBOL_*
// variable that an Env helper could not parse while the flags were
// defined: a bad value is a start-up error naming the variable, never
// silently the default.
func ParseStd(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		EnvError() // the flags' error comes first; forget the rest
		return err
	}
	return EnvError()
}

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
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no PEM certificates", clientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// EnvInt64 returns an integer from the environment or def. A value that
// does not parse is recorded for Parse to refuse.
func EnvInt64(key string, def int64) int64 {
	if v := os.Getenv(key); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			badEnv(key, "a whole number")
			return def
		}
		return n
	}
	return def
}

// Exit ends a binary's main: nothing on success, status 0 after -h/--help
// (the flag package has printed the usage), otherwise the error on stderr
// and status 1.
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
