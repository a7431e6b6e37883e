// Package riskd assembles the risk service: production (Redis for velocity
// counters and for rule-set history and lists) and the embedded default of
// `obol dev` (in-process counters and state). Outside PCI scope: it imports
// nothing from vault/ or proxy/.
package riskd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/internal/serve"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/engine"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/refdata"
	"github.com/obolpay/obol/risk/service"
)

// Config configures riskd. Token is a secret: String never prints it.
type Config struct {
	RedisURL string
	// StateRedisURL holds rule-set history and lists (default RedisURL); it
	// should persist, unlike the counters.
	StateRedisURL string
	GRPCAddr      string
	HTTPAddr      string
	GRPCTLS       *tls.Config
	// Edge: REST TLS and TLS-terminating proxy declarations.
	Edge            serve.Edge
	Token           string
	RulesFile       string
	BINTable        string
	IPTable         string
	Fallback        map[string]string
	DefaultFallback string
	WatchEvery      time.Duration
	// KeyPrefix namespaces every Redis key (default "obol:risk:"), so that
	// deployments (or tests) can share a Redis.
	KeyPrefix string
	// StatePath (embedded default only) keeps rule-set history and lists
	// in this JSON file across restarts; empty: in memory only.
	StatePath  string
	Reflection bool
	Logger     *slog.Logger
}

// Instance is a built riskd.
type Instance struct {
	Engine *engine.Engine
	// Velocity is the velocity store of a production riskd (nil for the
	// embedded default): Serve runs its syncs with Redis.
	Velocity *features.Aggregated
	Service  *service.Service
	Server   *serve.Server
	watch    time.Duration
	closers  []func() error
}

// Serve serves until ctx ends, keeping rules and lists current.
func (in *Instance) Serve(ctx context.Context) error {
	go in.Engine.Watch(ctx, in.watch)
	if in.Velocity != nil {
		go in.Velocity.Run(ctx)
	}
	return in.Server.Serve(ctx)
}

// Close releases connections.
func (in *Instance) Close() {
	for _, c := range in.closers {
		_ = c()
	}
}

func connect(ctx context.Context, url, env string) (redis.UniversalClient, error) {
	// MaxRetries 1: a sync is idempotent (its batch id), and a retried
	// observe dedupes by payment id.
	return redisconn.Open(ctx, url, redisconn.Options{Var: env, ReadTimeout: time.Second, PoolSize: 64, MaxRetries: 1})
}

// checkSlot: every multi-key script and transaction of riskd (sync.lua,
// observe.lua, the rule-set MULTI) spans keys of the whole prefix, so on a
// Redis Cluster the prefix must carry a hash tag (all of riskd's keys in
// one slot, on one primary and its replica).
func checkSlot(rdb redis.UniversalClient, prefix, env string) error {
	if redisconn.IsCluster(rdb) && redisconn.HashTag(prefix) == "" {
		return fmt.Errorf("OBOL_RISK_KEY_PREFIX %q has no hash tag, and %s is a Redis Cluster: riskd's scripts need all its keys in one hash slot, set a prefix with a tag such as %q", prefix, env, "obol:risk:{risk}:")
	}
	return nil
}

// Start connects to Redis (failing with a clear message) and builds riskd.
func Start(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.Token == "" {
		return nil, errors.New("a service token is required (OBOL_RISK_TOKEN): the gateway and risk analysts authenticate with it")
	}
	if cfg.RedisURL == "" {
		return nil, errors.New("redis url is required (OBOL_RISK_REDIS_URL)")
	}
	counters, err := connect(ctx, cfg.RedisURL, "OBOL_RISK_REDIS_URL")
	if err != nil {
		return nil, err
	}
	stateRdb := counters
	if cfg.StateRedisURL != "" && cfg.StateRedisURL != cfg.RedisURL {
		if stateRdb, err = connect(ctx, cfg.StateRedisURL, "OBOL_RISK_STATE_REDIS_URL"); err != nil {
			counters.Close()
			return nil, err
		}
	}
	closeAll := func() {
		counters.Close()
		if stateRdb != counters {
			stateRdb.Close()
		}
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = "obol:risk:"
	}
	if err := checkSlot(counters, prefix, "OBOL_RISK_REDIS_URL"); err != nil {
		closeAll()
		return nil, err
	}
	if err := checkSlot(stateRdb, prefix, "OBOL_RISK_STATE_REDIS_URL"); err != nil {
		closeAll()
		return nil, err
	}
	velocity := features.NewAggregated(counters, prefix, features.AggregatedOptions{})
	// The first sync scans the keyspace for the keys that exist: done
	// here, before any evaluation waits for it.
	if err := velocity.Sync(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("velocity counters: %w", err)
	}
	in, err := build(ctx, cfg, velocity, engine.NewRedisState(stateRdb, prefix), func(ctx context.Context) error {
		// On a cluster: the primary of riskd's slot.
		if err := redisconn.PingFor(ctx, counters, prefix+"vstream"); err != nil {
			return apierr.StorageUnavailable(err)
		}
		return nil
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	in.Velocity = velocity
	in.closers = append(in.closers, counters.Close)
	if stateRdb != counters {
		in.closers = append(in.closers, stateRdb.Close)
	}
	return in, nil
}

// StartEmbedded builds riskd on in-process counters and state (rule sets
// and lists in cfg.StatePath when set).
func StartEmbedded(ctx context.Context, cfg Config) (*Instance, error) {
	if cfg.Token == "" {
		return nil, errors.New("a service token is required")
	}
	var st engine.State = engine.NewMemoryState(10_000)
	if cfg.StatePath != "" {
		fst, err := engine.OpenFileState(cfg.StatePath, 10_000)
		if err != nil {
			return nil, err
		}
		st = fst
	}
	return build(ctx, cfg, features.NewMemory(), st, nil)
}

func build(ctx context.Context, cfg Config, fs features.Store, st engine.State, ready func(context.Context) error) (*Instance, error) {
	ec := engine.Config{Features: fs, State: st, RulesFile: cfg.RulesFile, Fallback: cfg.Fallback, DefaultFallback: cfg.DefaultFallback, Logger: cfg.Logger}
	var err error
	if cfg.BINTable != "" {
		if ec.BINs, err = refdata.LoadFile(cfg.BINTable, refdata.LoadBINs); err != nil {
			return nil, err
		}
	}
	if cfg.IPTable != "" {
		if ec.IPs, err = refdata.LoadFile(cfg.IPTable, refdata.LoadIPs); err != nil {
			return nil, err
		}
	}
	eng, err := engine.New(ctx, ec)
	if err != nil {
		return nil, err
	}
	svc := service.New(eng, cfg.Token)
	stats := &eng.Stats
	var extra []prometheus.Collector
	if v, ok := fs.(*features.Aggregated); ok {
		vs := &v.Stats
		extra = append(extra,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_velocity_syncs_total", Help: "Syncs of the velocity counters with Redis."}, func() float64 { return float64(vs.Syncs.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_velocity_sync_errors_total", Help: "Syncs with Redis that failed."}, func() float64 { return float64(vs.SyncErrors.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_velocity_sync_seconds_total", Help: "Time spent in syncs with Redis."}, func() float64 { return float64(vs.SyncNanos.Load()) / 1e9 }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_velocity_waits_total", Help: "Evaluations that waited for a sync (a key not cached yet, or the last sync too old)."}, func() float64 { return float64(vs.Waits.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_velocity_duplicates_total", Help: "Payments another replica had counted already."}, func() float64 { return float64(vs.Duplicates.Load()) }),
		)
	}
	srv, err := serve.New(ctx, serve.Options{
		Name: "risk", GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, GRPCTLS: cfg.GRPCTLS, Edge: cfg.Edge, Reflection: cfg.Reflection, Logger: cfg.Logger,
		Register: func(g *grpc.Server) { riskv1.RegisterRiskServiceServer(g, svc) },
		RegisterREST: func(ctx context.Context, m *runtime.ServeMux) error {
			return riskv1.RegisterRiskServiceHandlerServer(ctx, m, svc)
		},
		OpenAPI:     riskv1.OpenAPI,
		Ready:       ready,
		HealthNames: []string{riskv1.RiskService_ServiceDesc.ServiceName},
		Collectors: append([]prometheus.Collector{
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_evaluations_total", Help: "Evaluations (counted)."}, func() float64 { return float64(stats.Evaluations.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_dry_runs_total", Help: "Dry runs."}, func() float64 { return float64(stats.DryRuns.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_fallbacks_total", Help: "Decisions that used the fallback action (velocity store unavailable)."}, func() float64 { return float64(stats.Fallbacks.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_records_dropped_total", Help: "Decisions not recorded for backtests (queue full)."}, func() float64 { return float64(stats.DroppedRecords.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_rules_rejected_total", Help: "Rule files rejected by the hot reload (the previous set stayed active)."}, func() float64 { return float64(stats.RejectedReloads.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "obol_risk_rule_errors_total", Help: "Rule evaluations that failed (treated as not matched)."}, func() float64 { return float64(stats.RuleErrors.Load()) }),
		}, extra...),
	})
	if err != nil {
		return nil, err
	}
	watch := cfg.WatchEvery
	if watch <= 0 {
		watch = 2 * time.Second
	}
	return &Instance{Engine: eng, Service: svc, Server: srv, watch: watch}, nil
}
