// Package server serves the vault service: gRPC over TLS (client certificates
// requested, required only by Detokenize) and REST through an in-process
// grpc-gateway, plus health, readiness, Prometheus metrics, the OpenAPI
// document and CORS for checkout pages. It is part of the PCI zone. Neither
// interceptors nor middleware ever log request or response bodies; metric
// labels are method names and codes only.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/httpapi"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/service"
)

// Options configure a Server.
type Options struct {
	Service  *service.Service
	Envelope *envelope.Envelope
	// OriginAllowed answers CORS preflights for the tokenize endpoint.
	OriginAllowed func(ctx context.Context, origin string) (bool, error)
	GRPCAddr      string
	HTTPAddr      string
	// GRPCTLS is required: Detokenize authenticates the gateway by its
	// client certificate.
	GRPCTLS *tls.Config
	// HTTPTLS serves REST over TLS when set.
	HTTPTLS    *tls.Config
	MaxBody    int64
	Reflection bool
	Logger     *slog.Logger
}

// Server is a running vault server.
type Server struct {
	opts   Options
	log    *slog.Logger
	grpc   *grpc.Server
	http   *http.Server
	lnGRPC net.Listener
	lnHTTP net.Listener
	health *health.Server
	reg    *prometheus.Registry
	reqs   *prometheus.CounterVec
	dur    *prometheus.HistogramVec
}

// New binds both listeners (so the addresses are known at once) and builds
// the handlers. Call Serve to start.
func New(opts Options) (*Server, error) {
	if opts.GRPCTLS == nil {
		return nil, errors.New("vault server: gRPC TLS is required (Detokenize authenticates the gateway by client certificate)")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = httpapi.DefaultMaxBody
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, reg: prometheus.NewRegistry()}
	s.metrics()
	var err error
	if s.lnGRPC, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("gRPC listen %s: %w", opts.GRPCAddr, err)
	}
	if s.lnHTTP, err = net.Listen("tcp", opts.HTTPAddr); err != nil {
		s.lnGRPC.Close()
		return nil, fmt.Errorf("HTTP listen %s: %w", opts.HTTPAddr, err)
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(opts.GRPCTLS)),
		grpc.ChainUnaryInterceptor(s.recoverUnary, s.observeUnary),
		grpc.MaxRecvMsgSize(int(opts.MaxBody)),
	)
	vaultv1.RegisterVaultServiceServer(s.grpc, opts.Service)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if opts.Reflection {
		reflection.Register(s.grpc)
	}
	mux := httpapi.NewMux(s.log)
	if err := vaultv1.RegisterVaultServiceHandlerServer(context.Background(), mux, opts.Service); err != nil {
		return nil, err
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	root.HandleFunc("GET /readyz", s.readyz)
	root.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(vaultv1.OpenAPI)
	})
	root.Handle("/v1/", s.cors(httpapi.LimitBody(opts.MaxBody, mux)))
	s.http = &http.Server{
		Handler:           s.observeHTTP(root),
		TLSConfig:         opts.HTTPTLS,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.lnGRPC.Addr().String() }

// HTTPAddr is the bound REST address.
func (s *Server) HTTPAddr() string { return s.lnHTTP.Addr().String() }

// Register adds collectors to the server's /metrics.
func (s *Server) Register(cs ...prometheus.Collector) { s.reg.MustRegister(cs...) }

// Registry exposes the metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Serve runs until ctx ends, then drains in-flight requests (up to 10s).
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.lnGRPC) }()
	go func() {
		var err error
		if s.opts.HTTPTLS != nil {
			err = s.http.ServeTLS(s.lnHTTP, "", "")
		} else {
			err = s.http.Serve(s.lnHTTP)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go s.healthLoop(ctx)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			s.shutdown()
			return err
		}
	}
	s.shutdown()
	return nil
}

func (s *Server) shutdown() {
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.http.Shutdown(sctx)
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		s.grpc.Stop()
	}
}

func (s *Server) healthLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		st := healthpb.HealthCheckResponse_SERVING
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.opts.Service.Ready(cctx); err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		cancel()
		s.health.SetServingStatus("", st)
		s.health.SetServingStatus(vaultv1.VaultService_ServiceDesc.ServiceName, st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opts.Service.Ready(ctx); err != nil {
		httpapi.WriteError(w, apierr.From(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// cors answers preflights for POST /v1/tokens from configured checkout
// origins and marks tokenize responses readable by them. Other endpoints are
// server-to-server (secret keys) and get no CORS headers.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || r.URL.Path != "/v1/tokens" || s.opts.OriginAllowed == nil {
			next.ServeHTTP(w, r)
			return
		}
		ok, err := s.opts.OriginAllowed(r.Context(), origin)
		if err != nil {
			s.log.ErrorContext(r.Context(), "origin check failed", "err", err)
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

func (s *Server) metrics() {
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_vault_requests_total", Help: "Requests by transport, method and result code."}, []string{"transport", "method", "code"})
	s.dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "obol_vault_request_duration_seconds", Help: "Request latency by transport and method.", Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5}}, []string{"transport", "method"})
	s.reg.MustRegister(s.reqs, s.dur, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if env := s.opts.Envelope; env != nil {
		s.reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_deks_generated_total", Help: "Data keys generated through the key manager."}, func() float64 { return float64(env.Stats.DEKsGenerated.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_vault_deks_unwrapped_total", Help: "Data keys unwrapped through the key manager."}, func() float64 { return float64(env.Stats.DEKsUnwrapped.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_vault_dek_cache_entries", Help: "Plaintext data keys held in memory."}, func() float64 { return float64(env.CachedDEKs()) }),
		)
	}
	svc := s.opts.Service
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_vault_key_service_up", Help: "1 while the key service (Vault) is usable."}, func() float64 {
		if svc.KeysUp() {
			return 1
		}
		return 0
	}))
}

// observeUnary logs and counts each gRPC call: method, code, error code and
// duration. Never the request or response.
func (s *Server) observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	code := status.Code(err)
	s.reqs.WithLabelValues("grpc", method, code.String()).Inc()
	s.dur.WithLabelValues("grpc", method).Observe(time.Since(start).Seconds())
	attrs := []any{"method", method, "code", code.String(), "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		attrs = append(attrs, "error_code", apierr.From(err).Code)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "grpc request", argsToAttrs(attrs)...)
	return resp, err
}

func argsToAttrs(args []any) []slog.Attr {
	out := make([]slog.Attr, 0, len(args)/2)
	for i := 0; i+1 < len(args); i += 2 {
		out = append(out, slog.Any(args[i].(string), args[i+1]))
	}
	return out
}

// recoverUnary turns a panic into an internal error. The request is never
// printed; the stack is logged (it holds no argument values).
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// routeLabel collapses identifiers in a path so metric labels stay bounded
// and never carry request data: /v1/tokens/tok_x → /v1/tokens/{id}.
func routeLabel(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) > 4 {
		parts = parts[:4]
	}
	for i := range parts {
		if i >= 2 {
			parts[i] = "{id}"
		}
	}
	return "/" + strings.Join(parts, "/")
}

// observeHTTP logs and counts REST requests: method, route, status, duration.
func (s *Server) observeHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if rec := recover(); rec != nil {
				s.log.ErrorContext(r.Context(), "panic in HTTP handler", "stack", string(debug.Stack()))
				httpapi.WriteError(sw, apierr.New(apierr.KindInternal, apierr.CodeInternal, "", "internal error"))
			}
			route := routeLabel(r.URL.Path)
			if route == "/metrics" || route == "/healthz" || route == "/readyz" {
				return
			}
			s.reqs.WithLabelValues("http", r.Method+" "+route, fmt.Sprint(sw.status)).Inc()
			s.dur.WithLabelValues("http", r.Method+" "+route).Observe(time.Since(start).Seconds())
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", slog.String("method", r.Method), slog.String("route", route), slog.Int("status", sw.status), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
		}()
		next.ServeHTTP(sw, r)
	})
}
