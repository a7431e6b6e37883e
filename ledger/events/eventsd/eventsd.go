// Package eventsd assembles the events service: the event log, webhook
// endpoints and the webhook dispatcher, on PostgreSQL (production) or
// SQLite (the embedded default of obol dev). It serves the internal
// obol.events.v1.EventLogService over gRPC (service token) and health and
// metrics over HTTP; merchants reach it only through the gateway. Outside
// PCI scope: it imports nothing from vault/ or proxy/.
package eventsd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/ledger/events/delivery"
	"github.com/obolpay/obol/ledger/events/server"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/webhook"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
)

// Config configures eventsd. Token and SealKey are secrets.
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
	Edge       serve.Edge
	Token      string
	// SealKey (32 bytes) seals the endpoints' signing secrets at rest.
	SealKey []byte
	// AllowCIDRs admits non-public webhook destinations (operator
	// allowlist); DevLoopback admits loopback and plain http to it (obol
	// dev only).
	AllowCIDRs  []netip.Prefix
	DevLoopback bool
	// Concurrency bounds the webhook attempts in flight (default 64).
	Concurrency int
	// SendTimeout bounds one attempt (default 10 s).
	SendTimeout time.Duration
	// WebhookTLS is the client TLS configuration of deliveries (nil: the
	// system roots; tests set their CA).
	WebhookTLS *tls.Config
	Reflection bool
	Logger     *slog.Logger
}

// Instance is a built eventsd.
type Instance struct {
	Service    *server.Service
	Dispatcher *delivery.Dispatcher
	Server     *serve.Server
	Store      *store.Store
	sender     *webhook.Sender
	wg         sync.WaitGroup
}

// Start opens the database and builds the service.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.Token == "" {
		return nil, errors.New("a service token is required (OBOL_EVENTS_TOKEN): the gateway and the producers authenticate with it")
	}
	if len(cfg.SealKey) == 0 {
		return nil, errors.New("a secret-sealing key is required (OBOL_EVENTS_SEAL_KEY: 32 bytes, base64): webhook secrets are stored sealed with it")
	}
	sealer, err := webhook.NewSealer(cfg.SealKey)
	if err != nil {
		return nil, errors.New("OBOL_EVENTS_SEAL_KEY must be 32 bytes (base64)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var st *store.Store
	switch {
	case cfg.PostgresURL != "":
		st, err = store.OpenPostgresMode(ctx, cfg.PostgresURL, cfg.Migrate)
	case cfg.SQLitePath != "":
		st, err = store.OpenSQLite(ctx, cfg.SQLitePath)
	default:
		err = errors.New("an events database is required (OBOL_EVENTS_POSTGRES_URL)")
	}
	if err != nil {
		return nil, err
	}
	policy := &webhook.Policy{Allow: cfg.AllowCIDRs, DevLoopback: cfg.DevLoopback}
	sender := webhook.NewSender(policy, cfg.SendTimeout, cfg.WebhookTLS)
	// A lease covers one attempt (bounded by the send timeout) and its
	// recording; a crashed eventsd's deliveries are retried once it runs out.
	timeout := cfg.SendTimeout
	if timeout <= 0 {
		timeout = webhook.DefaultTimeout
	}
	lease := 2*timeout + 5*time.Second
	disp := delivery.New(delivery.Config{Store: st, Sender: sender, Sealer: sealer, Concurrency: cfg.Concurrency, Lease: lease, Logger: cfg.Logger})
	svc := server.New(server.Config{Store: st, Policy: policy, Sealer: sealer, Token: cfg.Token, Notify: disp.Notify})
	srv, err := serve.New(ctx, serve.Options{
		Name: "events", GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, GRPCTLS: cfg.GRPCTLS, Edge: cfg.Edge, Reflection: cfg.Reflection, Logger: cfg.Logger,
		Register:   func(g *grpc.Server) { eventsv1.RegisterEventLogServiceServer(g, svc) },
		MaxBody:    1 << 20,
		Collectors: disp.Collectors(),
		Ready: func(ctx context.Context) error {
			if err := st.Ping(ctx); err != nil {
				return apierr.StorageUnavailable(err)
			}
			return nil
		},
		HealthNames: []string{eventsv1.EventLogService_ServiceDesc.ServiceName},
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Instance{Service: svc, Dispatcher: disp, Server: srv, Store: st, sender: sender}, nil
}

// Serve serves and delivers webhooks until ctx ends.
func (in *Instance) Serve(ctx context.Context) error {
	in.wg.Go(func() { in.Dispatcher.Run(ctx) })
	err := in.Server.Serve(ctx)
	in.wg.Wait()
	return err
}

// Close closes the database.
func (in *Instance) Close() {
	in.sender.Close()
	in.Store.Close()
}
