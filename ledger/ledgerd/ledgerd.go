// Package ledgerd assembles the ledger service: production on PostgreSQL
// and the embedded default of `obol dev` on SQLite (both pass the same
// conformance and book suites). Outside PCI scope: it imports nothing from
// vault/ or proxy/.
package ledgerd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/eventrelay"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/periodic"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/service"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/postgres"
	"github.com/obolpay/obol/ledger/store/sqlite"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// Config configures ledgerd. Token is a secret.
type Config struct {
	// PostgresURL (production) or SQLitePath (embedded default).
	PostgresURL string
	// Migrate Off runs no DDL on PostgreSQL: the start fails with a
	// *migrate.BehindError naming obol migrate when the schema is behind
	// (default Auto: apply pending migrations).
	Migrate    migrate.Mode
	SQLitePath string
	GRPCAddr   string
	HTTPAddr   string
	GRPCTLS    *tls.Config
	// Edge: REST TLS and TLS-terminating proxy declarations.
	Edge  serve.Edge
	Token string
	// Settings is the YAML file of fees and payout terms ("" = defaults).
	Settings string
	// PayoutDelayDays, when set, replaces the default payout delay (T+N,
	// the settings' defaults.delay_days; merchant overrides still apply).
	// obol dev sets it from --payout-delay.
	PayoutDelayDays *int
	Reflection      bool
	// SweepEvery is how often expired authorization holds are released
	// (default 1 minute).
	SweepEvery time.Duration
	// Events is eventsd's internal EventLogService (PublishEvents): the
	// relay delivers the ledger's outbox (disputes, payouts, settlements)
	// to it every EventsEvery (default 1 s). Without it the events wait in
	// the outbox (ledger_events_pending counts them).
	Events      eventrelay.Publisher
	EventsToken string
	EventsEvery time.Duration
	Logger      *slog.Logger
}

// Instance is a built ledgerd.
type Instance struct {
	Book    *book.Book
	Service *service.Service
	Server  *serve.Server
	// Relay delivers the outbox to eventsd (nil without Config.Events).
	Relay       *eventrelay.Relay
	store       store.Store
	sweep       time.Duration
	eventsEvery time.Duration
	log         *slog.Logger
}

// Start opens the journal and builds the service.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.Token == "" {
		return nil, errors.New("a service token is required (OBOL_LEDGER_TOKEN): the gateway and finance tools authenticate with it")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	settings, err := book.LoadConfig(cfg.Settings)
	if err != nil {
		return nil, err
	}
	if d := cfg.PayoutDelayDays; d != nil {
		if *d < 0 || *d > 365 {
			return nil, fmt.Errorf("payout delay %d days: must be 0-365", *d)
		}
		settings.Defaults.DelayDays = d
	}
	var st store.Store
	switch {
	case cfg.PostgresURL != "":
		st, err = postgres.OpenMode(ctx, cfg.PostgresURL, cfg.Migrate)
	case cfg.SQLitePath != "":
		st, err = sqlite.Open(ctx, cfg.SQLitePath)
	default:
		err = errors.New("a ledger database is required (OBOL_LEDGER_POSTGRES_URL)")
	}
	if err != nil {
		return nil, err
	}
	b := book.New(st, settings)
	svc := service.New(b, cfg.Token)
	var relay *eventrelay.Relay
	collectors := []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_ledger_events_pending",
		Help: "Events waiting in the ledger's outbox for eventsd (dead ones not counted; -1: the database could not be read)."}, func() float64 {
		c, err := st.CountOutbox(context.Background())
		if err != nil {
			return -1
		}
		return float64(c.Pending)
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "obol_ledger_events_dead",
		Help: "Events eventsd refused for good, dead in the ledger's outbox (-1: the database could not be read)."}, func() float64 {
		c, err := st.CountOutbox(context.Background())
		if err != nil {
			return -1
		}
		return float64(c.Dead)
	})}
	if cfg.Events != nil {
		relay = eventrelay.New(eventrelay.Config{Outbox: Outbox(st), Publisher: cfg.Events, Token: cfg.EventsToken, Name: "ledger", Logger: cfg.Logger})
		collectors = append(collectors, relay.Collectors()...)
	}
	srv, err := serve.New(ctx, serve.Options{
		Name: "ledger", GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, GRPCTLS: cfg.GRPCTLS, Edge: cfg.Edge, Reflection: cfg.Reflection, Logger: cfg.Logger,
		Register: func(g *grpc.Server) { ledgerv1.RegisterLedgerServiceServer(g, svc) },
		RegisterREST: func(ctx context.Context, m *runtime.ServeMux) error {
			return ledgerv1.RegisterLedgerServiceHandlerServer(ctx, m, svc)
		},
		OpenAPI:    ledgerv1.OpenAPI,
		Collectors: collectors,
		MaxBody:    8 << 20, // settlement files
		Ready: func(ctx context.Context) error {
			if _, err := st.Account(ctx, "platform:readiness"); err != nil && !errors.Is(err, journal.ErrUnknownAccount) {
				return apierr.StorageUnavailable(err)
			}
			return nil
		},
		HealthNames: []string{ledgerv1.LedgerService_ServiceDesc.ServiceName},
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	sweep := cfg.SweepEvery
	if sweep <= 0 {
		sweep = time.Minute
	}
	every := cfg.EventsEvery
	if every <= 0 {
		every = time.Second
	}
	return &Instance{Book: b, Service: svc, Server: srv, Relay: relay, store: st, sweep: sweep, eventsEvery: every, log: cfg.Logger}, nil
}

// Serve serves until ctx ends, releasing expired authorization holds.
func (in *Instance) Serve(ctx context.Context) error {
	go periodic.Run(ctx, in.sweep, func(ctx context.Context) {
		if n, err := in.store.ExpirePending(ctx, time.Now()); err != nil {
			in.log.Warn("expiry sweep failed", "err", err)
		} else if n > 0 {
			in.log.Info("expired authorization holds released", "count", n)
		}
	})
	if in.Relay != nil {
		go in.Relay.Run(ctx, in.eventsEvery)
	}
	return in.Server.Serve(ctx)
}

// Close closes the journal.
func (in *Instance) Close() { in.store.Close() }
