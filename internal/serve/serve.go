// Package serve runs an Obol service's gRPC and REST listeners with the
// house conventions: request logging and metrics without bodies, panic
// recovery, gRPC health, /healthz, /readyz, /metrics, an OpenAPI document, a
// body limit, the failed-authentication limit, TLS (a plaintext listener
// beyond loopback refuses to start unless a TLS-terminating proxy is
// declared), and graceful shutdown. Metric labels and log fields come from
// fixed sets only (registered route templates, known HTTP methods, "other"):
// a request's raw method, path or query never reaches a label or a log line.
// PAN-free plumbing shared by every service.
package serve

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/telemetry"
)

// Options configure a server.
type Options struct {
	// Name prefixes metrics (obol_<name>_requests_total).
	Name     string
	GRPCAddr string
	HTTPAddr string
	// GRPCTLS serves gRPC over TLS when set. Without it the listener must be
	// on loopback, or Edge.GRPCBehindTLSProxy must declare a TLS-terminating
	// proxy in front.
	GRPCTLS *tls.Config
	// Edge is REST TLS, proxy declarations, trusted proxies and the
	// failed-authentication limits.
	Edge Edge
	// LimitAuthREST and LimitAuthGRPC turn on the failed-authentication
	// limiter on REST and gRPC: an attempt from a client address or with a
	// key prefix that failed too often is refused with 429 /
	// ResourceExhausted and Retry-After before the key is checked; a 401 /
	// Unauthenticated answer counts a failure.
	LimitAuthREST bool
	LimitAuthGRPC bool
	Reflection    bool
	MaxBody       int64
	Logger        *slog.Logger
	// Register adds gRPC services; RegisterREST adds grpc-gateway handlers.
	Register     func(*grpc.Server)
	RegisterREST func(context.Context, *runtime.ServeMux) error
	OpenAPI      []byte
	Ready        func(context.Context) error
	Collectors   []prometheus.Collector
	// WrapREST wraps the /v1/ handler (e.g. CORS), inside the body limit.
	WrapREST func(http.Handler) http.Handler
	// Routes are templates of REST paths served outside the grpc-gateway
	// mux (WrapREST handlers, e.g. /v1/forward); they label metrics as
	// themselves. Gateway routes are labelled by their registered template.
	Routes []string
	// HealthNames are gRPC service names whose health is reported besides "".
	HealthNames []string
	// Mount adds handlers outside /v1/ to the root mux (e.g. vaultd's
	// hosted fields); they bound their own bodies.
	Mount func(*http.ServeMux)
	// ShutdownTimeout is how long Serve, once its context ends, waits for
	// the requests in flight (REST and gRPC) before it cancels the gRPC
	// handlers still running (default 10 s). A server whose handlers move
	// money sets it to at least its own drain timeout, so that no handler
	// is cancelled while its payment is being drained.
	ShutdownTimeout time.Duration
}

// NotReady is a readiness failure that names every dependency checked:
// /readyz answers Err (its status and code) with a "dependencies" object
// beside the error, each dependency's "ok" or error code.
type NotReady struct {
	Err          *apierr.Error
	Dependencies map[string]string
}

func (e *NotReady) Error() string { return e.Err.Error() }

// Unwrap returns the public error (apierr.From finds it).
func (e *NotReady) Unwrap() error { return e.Err }

func writeNotReady(w http.ResponseWriter, nr *NotReady) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ra := nr.Err.RetryAfterSeconds(); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	w.WriteHeader(nr.Err.HTTPStatus())
	_ = json.NewEncoder(w).Encode(struct {
		httpapi.ErrorBody
		Dependencies map[string]string `json:"dependencies"`
	}{httpapi.ErrorBody{Error: httpapi.ErrorDetail{Code: nr.Err.Code, Message: nr.Err.Message, Field: nr.Err.Field}}, nr.Dependencies})
}

// Server is a bound, not yet serving, server.
type Server struct {
	opts    Options
	log     *slog.Logger
	grpc    *grpc.Server
	http    *http.Server
	lnG     net.Listener
	lnH     net.Listener
	health  *health.Server
	reg     *prometheus.Registry
	reqs    *prometheus.CounterVec
	dur     *prometheus.HistogramVec
	routes  map[string]bool
	limiter *authlimit.Limiter
}

// Edge is the part of a daemon's configuration about how its listeners are
// exposed; every daemon takes one (cmd/* fill it from the shared flags in
// internal/cli).
type Edge struct {
	// HTTPTLS serves REST over TLS. Without it the REST listener must be on
	// loopback, or HTTPBehindTLSProxy must declare a TLS-terminating proxy.
	HTTPTLS            *tls.Config
	HTTPBehindTLSProxy bool
	GRPCBehindTLSProxy bool
	// TrustedProxies are the peers whose X-Forwarded-For (or gRPC
	// x-forwarded-for) is believed when the limiter picks the client
	// address; none: the peer address only.
	TrustedProxies []netip.Prefix
	// AuthLimit sets the failed-authentication limits and their shared
	// counter (nil Counter: in-process, per replica).
	AuthLimit authlimit.Config
	// Vars is the prefix of the daemon's own variables (e.g.
	// "OBOL_GATEWAYD_"), named by the refusals.
	Vars string
}

// AuthLimiter is the failed-authentication limiter (nil when off).
func (s *Server) AuthLimiter() *authlimit.Limiter { return s.limiter }

// New binds the listeners and builds the handlers.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 64 << 10
	}
	if o.Ready == nil {
		o.Ready = func(context.Context) error { return nil }
	}
	o.Logger = telemetry.Logger(o.Logger)
	s := &Server{opts: o, log: o.Logger, reg: prometheus.NewRegistry(), routes: map[string]bool{"/openapi.json": true}}
	for _, r := range o.Routes {
		s.routes[r] = true
	}
	reg := s.reg
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_" + o.Name + "_requests_total", Help: "Requests by transport, method and result code."}, []string{"transport", "method", "code"})
	s.dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "obol_" + o.Name + "_request_duration_seconds", Help: "Request latency.", Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .5, 1}}, []string{"transport", "method"})
	reg.MustRegister(s.reqs, s.dur, collectors.NewGoCollector())
	reg.MustRegister(o.Collectors...)
	if o.LimitAuthREST || o.LimitAuthGRPC {
		lc := o.Edge.AuthLimit
		lc.Name, lc.Logger = o.Name, o.Logger
		s.limiter = authlimit.New(lc)
		reg.MustRegister(s.limiter.Collectors()...)
	}
	var err error
	if s.lnG, err = net.Listen("tcp", o.GRPCAddr); err != nil {
		return nil, fmt.Errorf("gRPC listen %s: %w", o.GRPCAddr, err)
	}
	if s.lnH, err = net.Listen("tcp", o.HTTPAddr); err != nil {
		s.lnG.Close()
		return nil, fmt.Errorf("HTTP listen %s: %w", o.HTTPAddr, err)
	}
	if err := s.checkTLS(); err != nil {
		s.lnG.Close()
		s.lnH.Close()
		return nil, err
	}
	creds := insecure.NewCredentials()
	if o.GRPCTLS != nil {
		creds = credentials.NewTLS(o.GRPCTLS)
	}
	s.grpc = grpc.NewServer(grpc.Creds(creds), grpc.StatsHandler(telemetry.GRPCServerHandler()), grpc.ChainUnaryInterceptor(s.recoverUnary, s.observeUnary, s.limitUnary, checkIdempotencyKey), grpc.MaxRecvMsgSize(int(o.MaxBody)),
		// Calls run on reused worker goroutines (a new one per call when
		// all are busy) whose stacks have grown already, instead of a
		// new goroutine per call that grows its stack again.
		grpc.NumStreamWorkers(uint32(max(64, 8*goruntime.GOMAXPROCS(0)))))
	if o.Register != nil {
		o.Register(s.grpc)
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if o.Reflection {
		reflection.Register(s.grpc)
	}
	mux := httpapi.NewMux(s.log, runtime.WithMetadata(recordRoute))
	if o.RegisterREST != nil {
		if err := o.RegisterREST(ctx, mux); err != nil {
			return nil, err
		}
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	root.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// Detached from the caller: the checks' result is shared (cached,
		// counted towards a grace), so a caller hanging up at once must
		// not make them fail for every other caller.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
		defer cancel()
		if err := o.Ready(cctx); err != nil {
			var nr *NotReady
			if errors.As(err, &nr) {
				writeNotReady(w, nr)
				return
			}
			httpapi.WriteError(w, apierr.From(err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
	root.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if o.OpenAPI != nil {
		root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(o.OpenAPI)
		})
	}
	var rest http.Handler = mux
	if o.WrapREST != nil {
		rest = o.WrapREST(rest)
	}
	root.Handle("/v1/", s.limitHTTP(httpapi.LimitBody(o.MaxBody, rest)))
	if o.Mount != nil {
		o.Mount(root)
	}
	s.http = &http.Server{
		Handler: s.observeHTTP(root), TLSConfig: o.Edge.HTTPTLS,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 32 << 10, ErrorLog: ErrorLog(s.log),
	}
	return s, nil
}

// Register adds collectors to /metrics.
func (s *Server) Register(cs ...prometheus.Collector) { s.reg.MustRegister(cs...) }

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.lnG.Addr().String() }

// HTTPAddr is the bound REST address.
func (s *Server) HTTPAddr() string { return s.lnH.Addr().String() }

// Serve serves until ctx ends, then drains for up to
// Options.ShutdownTimeout (default 10 s) before it cancels the gRPC
// handlers still running.
func (s *Server) Serve(ctx context.Context) error {
	// Health is known before the first request is served: a health check
	// answered right after start names every service (it was NotFound for
	// the named services until the first tick).
	s.updateHealth(ctx)
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.lnG) }()
	go func() {
		var err error
		if s.opts.Edge.HTTPTLS != nil {
			err = s.http.ServeTLS(s.lnH, "", "")
		} else {
			err = s.http.Serve(s.lnH)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.updateHealth(ctx)
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	grace := s.opts.ShutdownTimeout
	if grace <= 0 {
		grace = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	_ = s.http.Shutdown(sctx)
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		s.grpc.Stop()
	}
	return err
}

func (s *Server) observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	code := status.Code(err)
	s.reqs.WithLabelValues("grpc", method, code.String()).Inc()
	s.dur.WithLabelValues("grpc", method).Observe(time.Since(start).Seconds())
	attrs := []slog.Attr{slog.String("method", method), slog.String("code", code.String()), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000)}
	if err != nil {
		attrs = append(attrs, slog.String("error_code", apierr.From(err).Code))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "grpc request", attrs...)
	return resp, err
}

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(ctx, req)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// knownMethods are the HTTP methods that label metrics as themselves.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// Other labels any method or path outside the fixed sets.
const Other = "other"

// MethodLabel is m when it is a standard HTTP method, else "other".
func MethodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return Other
}

// routeKey carries a *routeHolder through the request context, so the
// grpc-gateway mux can report the template of the route it matched.
type routeKey struct{}

type routeHolder struct{ pattern string }

// recordRoute is a grpc-gateway metadata annotator: it runs once a route
// matched, with the route's template in ctx, and adds no metadata.
func recordRoute(ctx context.Context, _ *http.Request) metadata.MD {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		if p, ok := runtime.HTTPPathPattern(ctx); ok {
			h.pattern = p
		}
	}
	return nil
}

// routeLabel is the matched template, a fixed route, or "other".
func (s *Server) routeLabel(r *http.Request, h *routeHolder) string {
	if h.pattern != "" {
		return h.pattern
	}
	if s.routes[r.URL.Path] {
		return r.URL.Path
	}
	// Handlers mounted on the root mux (Options.Mount) are labelled by
	// their registered pattern, a fixed string.
	if r.Pattern != "" && r.Pattern != "/v1/" && r.Pattern != "/" {
		return r.Pattern
	}
	return Other
}

func (s *Server) observeHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics", "/healthz", "/readyz":
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h := &routeHolder{}
		ctx, span := telemetry.StartServerHTTP(r.Context(), r.Header, MethodLabel(r.Method))
		r = r.WithContext(context.WithValue(ctx, routeKey{}, h))
		defer func() {
			if rec := recover(); rec != nil {
				s.log.ErrorContext(r.Context(), "panic in HTTP handler", "stack", string(debug.Stack()))
				httpapi.WriteError(sw, apierr.New(apierr.KindInternal, apierr.CodeInternal, "", "internal error"))
			}
			telemetry.EndServerHTTP(span, MethodLabel(r.Method), s.routeLabel(r, h), sw.status)
			label := MethodLabel(r.Method) + " " + s.routeLabel(r, h)
			s.reqs.WithLabelValues("http", label, strconv.Itoa(sw.status)).Inc()
			s.dur.WithLabelValues("http", label).Observe(time.Since(start).Seconds())
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http request", slog.String("method", MethodLabel(r.Method)), slog.String("route", s.routeLabel(r, h)), slog.Int("status", sw.status), slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
		}()
		next.ServeHTTP(sw, r)
	})
}

// updateHealth sets the gRPC health of "" and every named service from
// Options.Ready.
func (s *Server) updateHealth(ctx context.Context) {
	st := healthpb.HealthCheckResponse_SERVING
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := s.opts.Ready(cctx); err != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	cancel()
	s.health.SetServingStatus("", st)
	for _, n := range s.opts.HealthNames {
		s.health.SetServingStatus(n, st)
	}
}
