package vaultd

// The vault's transport: gRPC over TLS (client certificates requested,
// required only by Detokenize) and REST through an in-process grpc-gateway
// on internal/serve, with CORS for checkout pages and the vault's key
// metrics. Neither interceptors nor middleware ever log request or response
// bodies.

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/serve"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/service"
)

// serverOptions configure the vault's server.
type serverOptions struct {
	Service  *service.Service
	Envelope *envelope.Envelope
	// OriginAllowed answers CORS preflights for the tokenize endpoint.
	OriginAllowed func(ctx context.Context, origin string) (bool, error)
	GRPCAddr      string
	HTTPAddr      string
	// GRPCTLS is required: Detokenize authenticates the gateway by its
	// client certificate.
	GRPCTLS *tls.Config
	// Edge is REST TLS, proxy declarations, trusted proxies and the
	// failed-authentication limits (on REST: the merchant-facing edge).
	Edge       serve.Edge
	MaxBody    int64
	Reflection bool
	Logger     *slog.Logger
	// Routes adds handlers outside /v1/ (the hosted card fields).
	Routes func(*http.ServeMux)
}

// corsOrigins answers CORS for the browser endpoints.
type corsOrigins struct {
	allowed func(ctx context.Context, origin string) (bool, error)
	log     *slog.Logger
}

// newServer binds both listeners and builds the handlers. Call Serve to
// start.
func newServer(opts serverOptions) (*serve.Server, error) {
	if opts.GRPCTLS == nil {
		return nil, errors.New("vaultd: gRPC TLS is required (Detokenize authenticates the gateway by client certificate)")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = httpapi.DefaultMaxBody
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &corsOrigins{allowed: opts.OriginAllowed, log: opts.Logger}
	svc := opts.Service
	return serve.New(context.Background(), serve.Options{
		Name: "vault", GRPCAddr: opts.GRPCAddr, HTTPAddr: opts.HTTPAddr, GRPCTLS: opts.GRPCTLS, Edge: opts.Edge, LimitAuthREST: true,
		Reflection: opts.Reflection, MaxBody: opts.MaxBody, Logger: opts.Logger,
		Register: func(g *grpc.Server) { vaultv1.RegisterVaultServiceServer(g, svc) },
		RegisterREST: func(ctx context.Context, m *runtime.ServeMux) error {
			return vaultv1.RegisterVaultServiceHandlerServer(ctx, m, svc)
		},
		OpenAPI:     vaultv1.OpenAPI,
		Ready:       svc.Ready,
		WrapREST:    c.wrap,
		Routes:      []string{"/v1/tokens"}, // CORS preflights are answered before the mux
		HealthNames: []string{vaultv1.VaultService_ServiceDesc.ServiceName},
		Collectors:  collectors(svc, opts.Envelope),
		Mount:       opts.Routes,
	})
}

func collectors(svc *service.Service, env *envelope.Envelope) []prometheus.Collector {
	cs := []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_vault_key_service_up", Help: "1 while the key service (Vault) is usable."}, func() float64 {
		if svc.KeysUp() {
			return 1
		}
		return 0
	})}
	if env != nil {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_deks_generated_total", Help: "Data keys generated through the key manager."}, func() float64 { return float64(env.Stats.DEKsGenerated.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_deks_unwrapped_total", Help: "Data keys unwrapped through the key manager."}, func() float64 { return float64(env.Stats.DEKsUnwrapped.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_vault_dek_cache_entries", Help: "Plaintext data keys held in memory."}, func() float64 { return float64(env.CachedDEKs()) }),
		)
	}
	return cs
}

// browserPath: the endpoints a publishable key may call from a checkout
// page: tokenize, and attaching a CVC with a client secret.
func browserPath(p string) bool {
	if p == "/v1/tokens" {
		return true
	}
	rest, ok := strings.CutPrefix(p, "/v1/tokens/")
	tok, ok2 := strings.CutSuffix(rest, "/cvc")
	return ok && ok2 && tok != "" && !strings.Contains(tok, "/")
}

// wrap answers preflights for POST /v1/tokens and POST
// /v1/tokens/{token}/cvc from configured checkout origins and marks their
// responses readable by them. Other endpoints are
// server-to-server (secret keys) and get no CORS headers.
func (c *corsOrigins) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !browserPath(r.URL.Path) || c.allowed == nil {
			next.ServeHTTP(w, r)
			return
		}
		ok, err := c.allowed(r.Context(), origin)
		if err != nil {
			c.log.ErrorContext(r.Context(), "origin check failed", "err", err)
			httpapi.WriteError(w, apierr.StorageUnavailable(err))
			return
		}
		w.Header().Add("Vary", "Origin")
		if !ok {
			httpapi.WriteError(w, service.ErrOriginNotAllowed)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "POST")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
