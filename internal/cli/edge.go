package cli

import (
	"fmt"
	"time"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/serve"
)

// EdgeConfig is the listener-exposure part every daemon's config embeds
// (REST TLS, TLS-terminating proxy declarations, trusted proxies,
// failed-auth limits), with envprefix naming the daemon: its variables are
// the daemon's own (OBOL_GATEWAYD_HTTP_TLS_CERT, ...).
type EdgeConfig struct {
	HTTPTLS        bool          `env:"OBOL_*_HTTP_TLS" was:"OBOL_HTTP_TLS" flag:"http-tls" doc:"serve REST over TLS with the gRPC server certificate (OBOL_*_TLS_CERT, OBOL_*_TLS_KEY)"`
	HTTPCert       string        `env:"OBOL_*_HTTP_TLS_CERT" was:"OBOL_HTTP_TLS_CERT" flag:"http-tls-cert" form:"a PEM file" doc:"REST server certificate; REST is served over TLS with it"`
	HTTPKey        string        `env:"OBOL_*_HTTP_TLS_KEY" was:"OBOL_HTTP_TLS_KEY" flag:"http-tls-key" form:"a PEM file" doc:"REST server key"`
	HTTPProxy      bool          `env:"OBOL_*_HTTP_BEHIND_TLS_PROXY" was:"OBOL_HTTP_BEHIND_TLS_PROXY" flag:"http-behind-tls-proxy" doc:"serve REST in plaintext beyond loopback because a TLS-terminating proxy sits in front (logged loudly)"`
	GRPCProxy      bool          `env:"OBOL_*_GRPC_BEHIND_TLS_PROXY" was:"OBOL_GRPC_BEHIND_TLS_PROXY" flag:"grpc-behind-tls-proxy" doc:"serve gRPC in plaintext beyond loopback because a TLS-terminating proxy sits in front (logged loudly)"`
	TrustedProxies string        `env:"OBOL_*_TRUSTED_PROXIES" was:"OBOL_TRUSTED_PROXIES" flag:"trusted-proxies" form:"comma-separated CIDRs" doc:"proxies whose X-Forwarded-For is believed for the client address (default: none)"`
	PerAddress     int64         `env:"OBOL_*_AUTH_FAIL_LIMIT" was:"OBOL_AUTH_FAIL_LIMIT" flag:"auth-fail-limit" default:"20" positive:"true" doc:"failed authentications per client address per window before 429"`
	PerPrefix      int64         `env:"OBOL_*_AUTH_FAIL_PREFIX_LIMIT" was:"OBOL_AUTH_FAIL_PREFIX_LIMIT" flag:"auth-fail-prefix-limit" default:"100" positive:"true" doc:"failed authentications per API key prefix per window before 429"`
	Window         time.Duration `env:"OBOL_*_AUTH_FAIL_WINDOW" was:"OBOL_AUTH_FAIL_WINDOW" flag:"auth-fail-window" default:"5m" positive:"true" doc:"window of the failed-authentication limits"`
}

// Edge builds the edge configuration. prefix is the prefix of the daemon's
// own variables (e.g. "OBOL_GATEWAYD_", see DaemonVars), named in the
// errors; grpcCert and grpcKey are the daemon's gRPC certificate files,
// which --http-tls reuses for REST.
func (f EdgeConfig) Edge(prefix, grpcCert, grpcKey string) (serve.Edge, error) {
	e := serve.Edge{Vars: prefix}
	p := prefix
	switch {
	case f.HTTPCert != "" || f.HTTPKey != "":
		if f.HTTPCert == "" || f.HTTPKey == "" {
			return e, fmt.Errorf("%sHTTP_TLS_CERT and %sHTTP_TLS_KEY (--http-tls-cert, --http-tls-key) must be set together", p, p)
		}
		tc, err := ServerTLS(f.HTTPCert, f.HTTPKey, "")
		if err != nil {
			return e, fmt.Errorf("REST %w", err)
		}
		e.HTTPTLS = tc
	case f.HTTPTLS:
		if grpcCert == "" || grpcKey == "" {
			return e, fmt.Errorf("%sHTTP_TLS=true reuses the gRPC certificate: set %sTLS_CERT and %sTLS_KEY (or give %sHTTP_TLS_CERT and %sHTTP_TLS_KEY)", p, p, p, p, p)
		}
		tc, err := ServerTLS(grpcCert, grpcKey, "")
		if err != nil {
			return e, fmt.Errorf("REST %w", err)
		}
		e.HTTPTLS = tc
	}
	e.HTTPBehindTLSProxy, e.GRPCBehindTLSProxy = f.HTTPProxy, f.GRPCProxy
	var err error
	if e.TrustedProxies, err = authlimit.ParsePrefixes(f.TrustedProxies); err != nil {
		return e, fmt.Errorf("%sTRUSTED_PROXIES: %w", p, err)
	}
	e.AuthLimit = authlimit.Config{PerAddress: f.PerAddress, PerPrefix: f.PerPrefix, Window: f.Window}
	return e, nil
}

// CheckListeners refuses, before anything is opened, a plaintext listener
// beyond loopback without a declared TLS-terminating proxy.
func CheckListeners(e serve.Edge, httpAddr, grpcAddr string, grpcTLS bool) error {
	if err := serve.CheckPlaintext(serve.RESTListener(e.Vars), httpAddr, e.HTTPTLS != nil, e.HTTPBehindTLSProxy); err != nil {
		return err
	}
	return serve.CheckPlaintext(serve.GRPCListener(e.Vars), grpcAddr, grpcTLS, e.GRPCBehindTLSProxy)
}

// DaemonVars is the prefix of a daemon's own variables, e.g. "GATEWAYD"
// (an envprefix tag) gives "OBOL_GATEWAYD_".
func DaemonVars(daemon string) string { return "OBOL_" + daemon + "_" }
