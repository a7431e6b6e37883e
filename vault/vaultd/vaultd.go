// Package vaultd is the vault daemon: it assembles the vault service
// (vault/service) from its parts and serves it (gRPC and REST on
// internal/serve, server.go), in the two shapes Obol runs it: production
// (HashiCorp Vault transit, PostgreSQL, Redis; Start) and the embedded
// default of `obol dev` (local keyring, SQLite, in-process CVC store;
// StartEmbedded). The key jobs, the audit anchor and the admin verbs it
// wires live in packages of their own. Wiring is explicit so an auditor can
// read what talks to what. Part of the PCI zone.
package vaultd

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/authlimit"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/serve"
	"github.com/obolpay/obol/vault/audit/anchor"
	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/obolpay/obol/vault/cvcstore/redisstore"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/hosted"
	"github.com/obolpay/obol/vault/keys/reencrypt"
	"github.com/obolpay/obol/vault/keys/refingerprint"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
)

// Config is vaultd's configuration (see cmd/vaultd for flags and env vars).
// Secret fields are never printed: String masks them.
type Config struct {
	Vault       transit.Config
	PostgresURL string
	// Migrate Off runs no DDL on PostgreSQL: the start fails with a
	// *migrate.BehindError naming obol migrate when the schema is behind
	// (default Auto: apply pending migrations).
	Migrate  migrate.Mode
	RedisURL string
	// AuthLimitRedisURL is the Redis of the failed-authentication
	// counters (default: the CVC Redis).
	AuthLimitRedisURL string
	GRPCAddr          string
	HTTPAddr          string
	TLSCertFile       string
	TLSKeyFile        string
	ClientCAFile      string
	// Edge is REST TLS, proxy declarations, trusted proxies and the
	// failed-authentication limits; Start shares the counters through the
	// CVC Redis.
	Edge            serve.Edge
	GatewayIdentity string
	// RequireRequestNonce refuses reveals without a request nonce (older
	// gateways) instead of sealing them unbound.
	RequireRequestNonce bool
	CVCTTL              time.Duration
	// CVCClientSecretTTL is how long a CVC client secret stays usable
	// (default 10 minutes, at most 1 hour).
	CVCClientSecretTTL time.Duration
	DEKMaxAge          time.Duration
	DEKMaxUses         int64
	KeyCheckEvery      time.Duration
	// KEKCheckEvery is how often the KEK version is polled (default 10s):
	// the bound on how long after a rotation new DEKs use the new version.
	KEKCheckEvery time.Duration
	// NoAutoRewrap disables rewrapping stored DEKs when the KEK rotates
	// (then run `obol keys rewrap`).
	NoAutoRewrap bool
	// ReencryptOlderThan makes vaultd re-seal, in the background, cards under
	// DEKs older than this and destroy DEKs that then protect nothing (0:
	// off; then use `obol keys reencrypt`). Must exceed the DEK max age.
	ReencryptOlderThan time.Duration
	// ReencryptEvery is how often that job runs (default 1h).
	ReencryptEvery time.Duration
	// AuditAnchorEvery is how often the audit chain's head is anchored in
	// Vault when it moved (default 10s).
	AuditAnchorEvery time.Duration
	Reflection       bool
	// TLS overrides the certificate files (tests and `obol dev`).
	TLS    *tls.Config
	Logger *slog.Logger
}

// String prints the configuration without secrets.
func (c Config) String() string {
	return fmt.Sprintf("vault=%s auth=%q transit=%s/%s grpc=%s http=%s", c.Vault.Address, c.Vault.AuthMethod(), cmp.Or(c.Vault.Mount, "transit"), cmp.Or(c.Vault.KeyName, "obol-kek"), c.GRPCAddr, c.HTTPAddr)
}

// Instance is a running (not yet serving) vault.
type Instance struct {
	Server   *serve.Server
	Service  *service.Service
	Store    store.Store
	CVCs     cvcstore.Store
	Envelope *envelope.Envelope
	// Rewrap counts the automatic rewrap job's work (production only).
	Rewrap  *rewrap.Progress
	watch   func(ctx context.Context)
	closers []func() error
}

// Serve serves until ctx ends, running the key-service watcher alongside.
func (in *Instance) Serve(ctx context.Context) error {
	if in.watch != nil {
		go in.watch(ctx)
	}
	return in.Server.Serve(ctx)
}

// Close releases connections (after Serve returned).
func (in *Instance) Close() {
	for i := len(in.closers) - 1; i >= 0; i-- {
		_ = in.closers[i]()
	}
}

// Start checks every dependency (with a message that says what to fix) and
// builds the production vault. Nothing is served until Serve.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Vault.Logger = log
	if maxAge := cmp.Or(cfg.DEKMaxAge, time.Hour); cfg.ReencryptOlderThan > 0 && cfg.ReencryptOlderThan <= maxAge {
		return nil, fmt.Errorf("OBOL_REENCRYPT_OLDER_THAN (%s) must exceed the DEK max age (%s)", cfg.ReencryptOlderThan, maxAge)
	}
	if cfg.CVCTTL < 0 || cfg.CVCTTL > service.MaxCVCTTL {
		return nil, fmt.Errorf("OBOL_CVC_TTL (%s) must be between 0 (default 1h) and %s", cfg.CVCTTL, service.MaxCVCTTL)
	}
	if cfg.CVCClientSecretTTL < 0 || cfg.CVCClientSecretTTL > service.MaxClientSecretTTL {
		return nil, fmt.Errorf("OBOL_CVC_CLIENT_SECRET_TTL (%s) must be between 0 (default %s) and %s", cfg.CVCClientSecretTTL, service.DefaultClientSecretTTL, service.MaxClientSecretTTL)
	}
	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.PostgresURL == "" {
		return nil, errors.New("the vault database's URL is required (OBOL_VAULT_POSTGRES_URL)")
	}
	if cfg.RedisURL == "" {
		return nil, errors.New("the CVC Redis URL is required (OBOL_CVC_REDIS_URL)")
	}
	kms, err := transit.New(cfg.Vault)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := kms.Check(cctx); err != nil {
		_ = kms.Close()
		return nil, fmt.Errorf("vault: %w", err)
	}
	st, err := postgres.Open(cctx, cfg.PostgresURL, postgres.Options{Migrate: cfg.Migrate})
	if err != nil {
		return nil, err
	}
	cvcs, err := redisstore.Open(cctx, cfg.RedisURL)
	if err != nil {
		st.Close()
		return nil, err
	}
	limits := cvcs.Client()
	var limitsClose func() error
	if cfg.AuthLimitRedisURL != "" && cfg.AuthLimitRedisURL != cfg.RedisURL {
		opt, err := redis.ParseURL(cfg.AuthLimitRedisURL)
		if err != nil {
			st.Close()
			cvcs.Close()
			return nil, errors.New("OBOL_AUTHLIMIT_REDIS_URL: not a redis:// or rediss:// URL") // the parse error would repeat the URL and its password
		}
		opt.MaintNotificationsConfig = redisconn.NoMaintNotifications()
		rdb := redis.NewClient(opt)
		if err := rdb.Ping(cctx).Err(); err != nil {
			st.Close()
			cvcs.Close()
			rdb.Close()
			return nil, fmt.Errorf("redis (failed-authentication counters, OBOL_AUTHLIMIT_REDIS_URL): %w", err)
		}
		limits, limitsClose = rdb, rdb.Close
	}
	cfg.Edge.AuthLimit.Counter = authlimit.NewRedis(limits, "obol:vault:authfail:")
	in, err := assemble(kms, st, cvcs, cfg, tlsCfg, log)
	if err != nil {
		st.Close()
		cvcs.Close()
		if limitsClose != nil {
			_ = limitsClose()
		}
		return nil, err
	}
	every := cfg.KeyCheckEvery
	if every <= 0 {
		every = time.Second
	}
	kekEvery := cfg.KEKCheckEvery
	if kekEvery <= 0 {
		kekEvery = 10 * time.Second
	}
	rw := rewrap.NewAuto(kms, st, log, !cfg.NoAutoRewrap, in.Service.Record)
	rw.Then = append(rw.Then, refingerprint.Job(in.Envelope, st))
	if cfg.ReencryptOlderThan > 0 {
		opts := reencrypt.Options{OlderThan: cfg.ReencryptOlderThan, Destroy: true, DEKMaxAge: cfg.DEKMaxAge}
		rw.Then = append(rw.Then, reencrypt.Job(in.Envelope, st, opts, cmp.Or(cfg.ReencryptEvery, time.Hour)))
	}
	anchorEvery := cfg.AuditAnchorEvery
	if anchorEvery <= 0 {
		anchorEvery = 10 * time.Second
	}
	in.Rewrap = rw.Progress()
	in.watch = func(ctx context.Context) {
		go in.Service.WatchKEKVersion(ctx, kms, kekEvery, func(int) { rw.Trigger(ctx) })
		go anchor.Run(ctx, st, kms, anchorEvery, log)
		in.Service.WatchKeyService(ctx, kms, every)
	}
	in.Server.Register(rw.Collectors(in.Service.KEKVersion)...)
	in.closers = append(in.closers, kms.Close, st.Close, cvcs.Close)
	if limitsClose != nil {
		in.closers = append(in.closers, limitsClose)
	}
	log.Info("vaultd ready", "config", cfg.String(), "grpc", in.Server.GRPCAddr(), "http", in.Server.HTTPAddr())
	return in, nil
}

func assemble(kms envelope.KeyManager, st store.Store, cvcs cvcstore.Store, cfg Config, tlsCfg *tls.Config, log *slog.Logger) (*Instance, error) {
	env := envelope.New(kms, st, envelope.Config{MaxAge: cfg.DEKMaxAge, MaxUses: cfg.DEKMaxUses})
	svc := service.New(st, cvcs, env, service.Config{CVCTTL: cfg.CVCTTL, ClientSecretTTL: cfg.CVCClientSecretTTL, GatewayIdentity: cfg.GatewayIdentity, RequireRequestNonce: cfg.RequireRequestNonce, Logger: log})
	fields := hosted.New(hosted.Options{Keys: st, Vault: svc, Logger: log})
	srv, err := newServer(serverOptions{
		Service: svc, Envelope: env, OriginAllowed: st.OriginAllowed,
		GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, GRPCTLS: tlsCfg, Edge: cfg.Edge,
		Reflection: cfg.Reflection, Logger: log, Routes: fields.Register,
	})
	if err != nil {
		return nil, err
	}
	srv.Register(fields.Collectors()...)
	return &Instance{Server: srv, Service: svc, Store: st, CVCs: cvcs, Envelope: env}, nil
}

func serverTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLS != nil {
		return cfg.TLS, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" || cfg.ClientCAFile == "" {
		return nil, errors.New("gRPC TLS is required: set OBOL_VAULTD_TLS_CERT, OBOL_VAULTD_TLS_KEY and OBOL_VAULTD_CLIENT_CA (the CA that signs the gateway's client certificate)")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(cfg.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s: no PEM certificates", cfg.ClientCAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}, nil
}
