package cli

import (
	"flag"
	"fmt"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/serve"
)

// EdgeFlags are the listener-exposure flags every daemon shares (REST TLS,
// TLS-terminating proxy declarations, trusted proxies, failed-auth limits).
type EdgeFlags struct {
	httpTLS, httpProxy, grpcProxy bool
	httpCert, httpKey, trusted    string
	perAddr, perPrefix            int64
	limitWindow                   string
}

// AddEdgeFlags registers the edge flags on fs, with OBOL_* defaults.
func AddEdgeFlags(fs *flag.FlagSet) *EdgeFlags {
	f := &EdgeFlags{}
	fs.BoolVar(&f.httpTLS, "http-tls", EnvBool("OBOL_HTTP_TLS", false), "serve REST over TLS with the gRPC server certificate (OBOL_TLS_CERT, OBOL_TLS_KEY)")
	fs.StringVar(&f.httpCert, "http-tls-cert", Env("OBOL_HTTP_TLS_CERT", ""), "REST server certificate (PEM); REST is served over TLS with it")
	fs.StringVar(&f.httpKey, "http-tls-key", Env("OBOL_HTTP_TLS_KEY", ""), "REST server key (PEM)")
	fs.BoolVar(&f.httpProxy, "http-behind-tls-proxy", EnvBool("OBOL_HTTP_BEHIND_TLS_PROXY", false), "serve REST in plaintext beyond loopback because a TLS-terminating proxy sits in front (logged loudly)")
	fs.BoolVar(&f.grpcProxy, "grpc-behind-tls-proxy", EnvBool("OBOL_GRPC_BEHIND_TLS_PROXY", false), "serve gRPC in plaintext beyond loopback because a TLS-terminating proxy sits in front (logged loudly)")
	fs.StringVar(&f.trusted, "trusted-proxies", Env("OBOL_TRUSTED_PROXIES", ""), "CIDRs of proxies whose X-Forwarded-For is believed for the client address (default: none)")
	fs.Int64Var(&f.perAddr, "auth-fail-limit", EnvInt64("OBOL_AUTH_FAIL_LIMIT", authlimit.DefaultPerAddress), "failed authentications per client address per window before 429")
	fs.Int64Var(&f.perPrefix, "auth-fail-prefix-limit", EnvInt64("OBOL_AUTH_FAIL_PREFIX_LIMIT", authlimit.DefaultPerPrefix), "failed authentications per API key prefix per window before 429")
	fs.StringVar(&f.limitWindow, "auth-fail-window", Env("OBOL_AUTH_FAIL_WINDOW", authlimit.DefaultWindow.String()), "window of the failed-authentication limits")
	return f
}

// Edge builds the edge configuration. grpcCert and grpcKey are the daemon's
// gRPC certificate files, which --http-tls reuses for REST.
func (f *EdgeFlags) Edge(grpcCert, grpcKey string) (serve.Edge, error) {
	var e serve.Edge
	switch {
	case f.httpCert != "" || f.httpKey != "":
		if f.httpCert == "" || f.httpKey == "" {
			return e, fmt.Errorf("OBOL_HTTP_TLS_CERT and OBOL_HTTP_TLS_KEY must be set together")
		}
		tc, err := ServerTLS(f.httpCert, f.httpKey, "")
		if err != nil {
			return e, fmt.Errorf("REST %w", err)
		}
		e.HTTPTLS = tc
	case f.httpTLS:
		if grpcCert == "" || grpcKey == "" {
			return e, fmt.Errorf("OBOL_HTTP_TLS=true reuses the gRPC certificate: set OBOL_TLS_CERT and OBOL_TLS_KEY (or give OBOL_HTTP_TLS_CERT and OBOL_HTTP_TLS_KEY)")
		}
		tc, err := ServerTLS(grpcCert, grpcKey, "")
		if err != nil {
			return e, fmt.Errorf("REST %w", err)
		}
		e.HTTPTLS = tc
	}
	e.HTTPBehindTLSProxy, e.GRPCBehindTLSProxy = f.httpProxy, f.grpcProxy
	var err error
	if e.TrustedProxies, err = authlimit.ParsePrefixes(f.trusted); err != nil {
		return e, fmt.Errorf("OBOL_TRUSTED_PROXIES: %w", err)
	}
	w, err := parseDuration(f.limitWindow)
	if err != nil || w <= 0 {
		return e, fmt.Errorf("OBOL_AUTH_FAIL_WINDOW: %q is not a positive duration", f.limitWindow)
	}
	if f.perAddr <= 0 || f.perPrefix <= 0 {
		return e, fmt.Errorf("OBOL_AUTH_FAIL_LIMIT and OBOL_AUTH_FAIL_PREFIX_LIMIT must be positive")
	}
	e.AuthLimit = authlimit.Config{PerAddress: f.perAddr, PerPrefix: f.perPrefix, Window: w}
	return e, nil
}

// CheckListeners refuses, before anything is opened, a plaintext listener
// beyond loopback without a declared TLS-terminating proxy.
func CheckListeners(e serve.Edge, httpAddr, grpcAddr string, grpcTLS bool) error {
	if err := serve.CheckPlaintext(serve.RESTListener(), httpAddr, e.HTTPTLS != nil, e.HTTPBehindTLSProxy); err != nil {
		return err
	}
	return serve.CheckPlaintext(serve.GRPCListener(), grpcAddr, grpcTLS, e.GRPCBehindTLSProxy)
}
