// Package gatewayd assembles the payments gateway: the payment store
// (PostgreSQL, or SQLite in obol dev), clients to vaultd (mTLS with the
// gateway identity), riskd and ledgerd, and the acquirer connectors. PCI
// zone: it holds card data in memory while forwarding to an acquirer.
package gatewayd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/eventrelay"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/periodic"
	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/internal/telemetry"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/connector"
	"github.com/obolpay/obol/proxy/forward"
	"github.com/obolpay/obol/proxy/service"
	paystore "github.com/obolpay/obol/proxy/store"
	paypg "github.com/obolpay/obol/proxy/store/postgres"
	paysqlite "github.com/obolpay/obol/proxy/store/sqlite"
)

// Config configures gatewayd. Tokens are secrets.
type Config struct {
	PostgresURL string
	// Migrate Off runs no DDL on PostgreSQL: the start fails with a
	// *migrate.BehindError naming obol migrate when the schema is behind
	// (default Auto: apply pending migrations).
	Migrate    migrate.Mode
	SQLitePath string
	GRPCAddr   string
	HTTPAddr   string
	GRPCTLS    *tls.Config
	// Edge is REST TLS, proxy declarations, trusted proxies and the
	// failed-authentication limits (REST and gRPC).
	Edge serve.Edge
	// RedisURL holds the failed-authentication counters shared by every
	// replica (empty: each replica counts on its own, logged at start).
	RedisURL   string
	Reflection bool
	// VaultAddr is vaultd's gRPC address; VaultTLS carries the gateway's
	// client certificate and vaultd's CA (required: Detokenize is mTLS only).
	VaultAddr string
	VaultTLS  *tls.Config
	// RiskAddr and LedgerAddr with their TLS (nil: plaintext, dev only).
	RiskAddr    string
	RiskTLS     *tls.Config
	RiskToken   string
	LedgerAddr  string
	LedgerTLS   *tls.Config
	LedgerToken string
	// EventsAddr is eventsd's gRPC address (with EventsTLS, nil: plaintext,
	// dev only, and EventsToken): the gateway serves the merchants' events
	// and webhook-endpoint calls by forwarding them there, and relays its
	// outbox of payment and refund events to it (PublishEvents). Empty:
	// those calls answer unavailable (events_not_configured) and the
	// events wait in the outbox.
	EventsAddr  string
	EventsTLS   *tls.Config
	EventsToken string
	// SimulatorURL enables the simulator connector.
	SimulatorURL string
	SimulatorTLS *tls.Config
	// StripeSecretKey enables the stripe connector (StripeURL: default
	// https://api.stripe.com; http on loopback for stripe-mock).
	StripeURL       string
	StripeSecretKey string
	StripeTLS       *tls.Config
	// DefaultAcquirer is the connector of payments that name none and
	// whose merchant has none in MerchantAcquirers.
	DefaultAcquirer   string
	MerchantAcquirers map[string]string
	// RoutesFile enables POST /v1/forward (YAML; validated at start,
	// hot-reloaded every RoutesReload, default 2 s). UpstreamTLS holds the
	// roots that upstream certificates are verified against (nil: the
	// system's); ForwardTimeout bounds each upstream call (default 20 s).
	RoutesFile     string
	RoutesReload   time.Duration
	UpstreamTLS    *tls.Config
	ForwardTimeout time.Duration
	// AcquirerTimeout bounds each acquirer call (default 10 s).
	AcquirerTimeout time.Duration
	// SweepInterval is how often the ledger outbox is delivered and
	// abandoned payments are reversed (default 10 s); ProcessingTimeout is
	// the age at which a processing payment counts as abandoned (default
	// 2 minutes).
	SweepInterval     time.Duration
	ProcessingTimeout time.Duration
	// ReadyCache is how long a readiness result is reused (default 1 s);
	// ReadyGrace how long a dependency must fail in a row before /readyz
	// reports it (default 3 s; see ready.go).
	ReadyCache, ReadyGrace time.Duration
	// DrainTimeout bounds how long a shutdown waits for payments in
	// flight, their compensations included (default 30 s; what is left is
	// resolved by the sweeper after a restart).
	DrainTimeout time.Duration
	// DialOptions are added to the clients of vaultd, riskd and ledgerd
	// (e.g. interceptors; the tests inject faults with them).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

// Instance is a built gatewayd.
type Instance struct {
	Service *service.Service
	Server  *serve.Server
	Routes  *forward.Routes // nil when /v1/forward is off
	closers []func() error
	// Relay delivers the merchant events to eventsd (nil without
	// Config.EventsAddr).
	Relay      *eventrelay.Relay
	sweepEvery time.Duration
	reload     time.Duration
	drain      time.Duration
	log        *slog.Logger
}

// Close releases connections.
func (in *Instance) Close() {
	for _, c := range in.closers {
		_ = c()
	}
}

// Serve serves, and sweeps, until ctx ends. The shutdown runs in the order
// that lets compensations finish: stop accepting, drain the payments in
// flight (their reversals and hold releases included, up to DrainTimeout),
// then stop the sweeper. The caller closes the clients (Close) and only
// then stops vaultd, riskd and ledgerd.
func (in *Instance) Serve(ctx context.Context) error {
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSweep()
	done := make(chan struct{})
	go func() { defer close(done); in.Service.Run(sweepCtx, in.sweepEvery) }()
	if in.Relay != nil {
		go in.Relay.Run(sweepCtx, time.Second)
	}
	if in.Routes != nil {
		go in.watchRoutes(ctx)
	}
	// The drain starts when ctx ends: the servers stop accepting and wait
	// for their handlers (up to DrainTimeout, never cancelling one
	// sooner), then the work still in flight (compensations) gets what is
	// left of DrainTimeout.
	var stopAt atomic.Int64
	defer context.AfterFunc(ctx, func() { stopAt.Store(time.Now().UnixNano()) })()
	err := in.Server.Serve(ctx)
	start := time.Now()
	if at := stopAt.Load(); at != 0 {
		start = time.Unix(0, at)
	}
	dctx, cancel := context.WithDeadline(context.Background(), start.Add(in.drain))
	if derr := in.Service.Drain(dctx); derr != nil {
		in.log.Warn("shutdown: payments still in flight after the drain timeout; the sweeper resolves them after a restart")
	}
	cancel()
	stopSweep()
	<-done
	return err
}

// watchRoutes reloads the route file when it changes; a bad file is
// refused whole (logged and counted) and the previous routes stay.
func (in *Instance) watchRoutes(ctx context.Context) {
	periodic.Run(ctx, in.reload, func(context.Context) {
		changed, err := in.Routes.Reload()
		switch {
		case err != nil:
			in.log.Error("route file refused; the previous routes stay active", "err", err)
		case changed:
			in.log.Info("route file reloaded", "routes", len(in.Routes.Table().Routes))
		}
	})
}

func dial(addr string, tc *tls.Config, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds), telemetry.GRPCClientOption()}, opts...)...)
}

// Start builds gatewayd.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	switch {
	case cfg.VaultAddr == "" || cfg.VaultTLS == nil:
		return nil, errors.New("vaultd's address and the gateway's mTLS client certificate are required (OBOL_VAULT_GRPC_ADDR, OBOL_GATEWAY_CERT)")
	case cfg.RiskAddr == "" || cfg.RiskToken == "":
		return nil, errors.New("riskd's address and token are required (OBOL_RISK_ADDR, OBOL_RISK_TOKEN)")
	case cfg.LedgerAddr == "" || cfg.LedgerToken == "":
		return nil, errors.New("ledgerd's address and token are required (OBOL_LEDGER_ADDR, OBOL_LEDGER_TOKEN)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	maskStdLog()
	if cfg.AcquirerTimeout <= 0 {
		cfg.AcquirerTimeout = 10 * time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 10 * time.Second
	}
	if cfg.RoutesReload <= 0 {
		cfg.RoutesReload = 2 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.ReadyCache <= 0 {
		cfg.ReadyCache = time.Second
	}
	if cfg.ReadyGrace <= 0 {
		cfg.ReadyGrace = 3 * time.Second
	}
	in := &Instance{sweepEvery: cfg.SweepInterval, reload: cfg.RoutesReload, drain: cfg.DrainTimeout, log: cfg.Logger}
	fail := func(err error) (*Instance, error) { in.Close(); return nil, err }
	var err error
	// The route file is checked before anything is opened: a bad file is
	// a start-up error that names the route and field.
	if cfg.RoutesFile != "" {
		if in.Routes, err = forward.Load(cfg.RoutesFile); err != nil {
			return nil, err
		}
	}
	connectors := map[string]connector.Connector{}
	if cfg.SimulatorURL != "" {
		sim, err := connector.NewSimulator(cfg.SimulatorURL, cfg.SimulatorTLS, cfg.AcquirerTimeout)
		if err != nil {
			return fail(err)
		}
		connectors[sim.Name()] = sim
	}
	if cfg.StripeSecretKey != "" {
		st, err := connector.NewStripe(connector.StripeConfig{BaseURL: cfg.StripeURL, SecretKey: cfg.StripeSecretKey, TLS: cfg.StripeTLS, Timeout: cfg.AcquirerTimeout})
		if err != nil {
			return fail(err)
		}
		connectors[st.Name()] = st
	}
	if len(connectors) == 0 {
		return fail(errors.New("no acquirer connector is configured (OBOL_SIMULATOR_URL, OBOL_STRIPE_SECRET_KEY)"))
	}
	if cfg.DefaultAcquirer == "" {
		cfg.DefaultAcquirer = "simulator"
		if connectors["simulator"] == nil {
			cfg.DefaultAcquirer = "stripe"
		}
	}
	for m, a := range cfg.MerchantAcquirers {
		if connectors[a] == nil {
			return fail(fmt.Errorf("merchant %s: connector %q is not configured", m, a))
		}
	}
	if connectors[cfg.DefaultAcquirer] == nil {
		return fail(fmt.Errorf("default acquirer %q is not configured", cfg.DefaultAcquirer))
	}
	var st *paystore.Store
	switch {
	case cfg.PostgresURL != "":
		st, err = paypg.OpenMode(ctx, cfg.PostgresURL, cfg.Migrate)
	case cfg.SQLitePath != "":
		st, err = paysqlite.Open(ctx, cfg.SQLitePath)
	default:
		err = errors.New("a gateway database is required (OBOL_GATEWAY_POSTGRES_URL)")
	}
	if err != nil {
		return fail(err)
	}
	in.closers = append(in.closers, st.Close)
	if cfg.RedisURL != "" {
		rdb, err := redisconn.Open(ctx, cfg.RedisURL, redisconn.Options{Var: "OBOL_AUTHLIMIT_REDIS_URL", ReadTimeout: time.Second})
		if err != nil {
			return fail(fmt.Errorf("redis (failed-authentication counters): %w", err))
		}
		in.closers = append(in.closers, rdb.Close)
		cfg.Edge.AuthLimit.Counter = authlimit.NewRedis(rdb, "obol:gateway:authfail:")
	} else if cfg.Edge.AuthLimit.Counter == nil {
		cfg.Logger.Warn("failed-authentication counters are per replica: set OBOL_AUTHLIMIT_REDIS_URL to share them between gatewayd replicas")
	}
	conns := map[string]*grpc.ClientConn{}
	for name, d := range map[string]struct {
		addr string
		tc   *tls.Config
	}{"vault": {cfg.VaultAddr, cfg.VaultTLS}, "risk": {cfg.RiskAddr, cfg.RiskTLS}, "ledger": {cfg.LedgerAddr, cfg.LedgerTLS}} {
		c, err := dial(d.addr, d.tc, cfg.DialOptions)
		if err != nil {
			return fail(fmt.Errorf("%s client: %w", name, err))
		}
		conns[name] = c
		in.closers = append(in.closers, c.Close)
	}
	events := &eventsFront{token: cfg.EventsToken}
	if cfg.EventsAddr != "" {
		if cfg.EventsToken == "" {
			return fail(errors.New("eventsd's token is required with its address (OBOL_EVENTS_TOKEN)"))
		}
		c, err := dial(cfg.EventsAddr, cfg.EventsTLS, cfg.DialOptions)
		if err != nil {
			return fail(fmt.Errorf("events client: %w", err))
		}
		in.closers = append(in.closers, c.Close)
		events.client = eventsv1.NewEventLogServiceClient(c)
	}
	var payStore service.Store = st
	if events.client != nil {
		// The payment and refund events of the gateway's outbox go to the
		// same eventsd (PublishEvents), relayed as soon as a write has
		// queued them.
		in.Relay = eventrelay.New(eventrelay.Config{Outbox: service.EventOutbox(st), Publisher: events.client, Token: cfg.EventsToken, Name: "gateway", Logger: cfg.Logger})
		payStore = kickingStore{Store: st, kick: in.Relay.Kick}
	}
	svc := service.New(service.Config{Store: payStore, Vault: vaultv1.NewVaultServiceClient(conns["vault"]), Risk: riskv1.NewRiskServiceClient(conns["risk"]), RiskToken: cfg.RiskToken,
		Ledger: ledgerv1.NewLedgerServiceClient(conns["ledger"]), LedgerToken: cfg.LedgerToken, Connectors: connectors, DefaultAcquirer: cfg.DefaultAcquirer, MerchantAcquirers: cfg.MerchantAcquirers, ProcessingTimeout: cfg.ProcessingTimeout, Logger: cfg.Logger})
	events.auth = svc.Authenticate
	var fwd *forward.Forwarder
	collectors := svc.Collectors()
	if in.Relay != nil {
		collectors = append(collectors, in.Relay.Collectors()...)
	}
	if in.Routes != nil {
		fwd = forward.New(forward.Config{Routes: in.Routes, Vault: vaultv1.NewVaultServiceClient(conns["vault"]), Authenticate: svc.Authenticate,
			Client:  &http.Client{Transport: telemetry.Transport("forward", &http.Transport{TLSClientConfig: cfg.UpstreamTLS, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true})},
			Timeout: cfg.ForwardTimeout, Logger: cfg.Logger})
		routes := in.Routes
		collectors = append(collectors, fwd.Requests, fwd.Redacted,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_gateway_routes_rejected_total", Help: "Route files refused by the hot reload (the previous routes stayed active)."}, func() float64 { return float64(routes.Rejected.Load()) }))
	}
	srv, err := serve.New(ctx, serve.Options{
		// No payment handler is cancelled before the drain ends.
		ShutdownTimeout: cfg.DrainTimeout,
		WrapREST: func(rest http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/forward" {
					if fwd == nil {
						httpapi.WriteError(w, apierr.New(apierr.KindNotFound, "forward_disabled", "", "the gateway has no route file (OBOL_GATEWAY_ROUTES); /v1/forward is off"))
						return
					}
					fwd.ServeHTTP(w, r)
					return
				}
				rest.ServeHTTP(w, r)
			})
		},
		Name: "gateway", GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, GRPCTLS: cfg.GRPCTLS, Edge: cfg.Edge, LimitAuthREST: true, LimitAuthGRPC: true, Reflection: cfg.Reflection, Logger: cfg.Logger,
		Register: func(g *grpc.Server) {
			gatewayv1.RegisterPaymentServiceServer(g, svc)
			gatewayv1.RegisterDisputeServiceServer(g, svc.Disputes())
			eventsv1.RegisterEventServiceServer(g, events)
		},
		RegisterREST: func(ctx context.Context, m *runtime.ServeMux) error {
			if err := gatewayv1.RegisterPaymentServiceHandlerServer(ctx, m, svc); err != nil {
				return err
			}
			if err := gatewayv1.RegisterDisputeServiceHandlerServer(ctx, m, svc.Disputes()); err != nil {
				return err
			}
			return eventsv1.RegisterEventServiceHandlerServer(ctx, m, events)
		},
		OpenAPI:    gatewayv1.OpenAPI,
		Collectors: collectors,
		Routes:     []string{"/v1/forward"},
		Ready: newReadiness([]dependency{
			{"database", apierr.CodeStorageUnavailable, st.Ping},
			{"vault", "vault_unavailable", healthCheck(conns["vault"])},
			{"risk", "risk_unavailable", healthCheck(conns["risk"])},
			{"ledger", "ledger_unavailable", healthCheck(conns["ledger"])},
		}, cfg.ReadyCache, cfg.ReadyGrace, nil).Ready,
		HealthNames: []string{gatewayv1.PaymentService_ServiceDesc.ServiceName, gatewayv1.DisputeService_ServiceDesc.ServiceName, eventsv1.EventService_ServiceDesc.ServiceName},
	})
	if err != nil {
		return fail(err)
	}
	in.Service, in.Server = svc, srv
	return in, nil
}
