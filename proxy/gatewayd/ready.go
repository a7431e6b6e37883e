package gatewayd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/serve"
)

// Readiness: gatewayd is ready when it can serve a payment. A payment
// needs, synchronously, its database, vaultd (every merchant key is checked
// there, and the card revealed), riskd (no decision, no charge) and
// ledgerd (the hold is taken before the acquirer is called). eventsd is
// not checked: events wait in the outbox while it is away.
//
// vaultd, riskd and ledgerd are asked through grpc.health.v1, which each
// reports from its own readiness (vaultd's is NOT_SERVING while HashiCorp
// Vault is sealed or unreachable, or its database or Redis is down).
//
// A blip does not take every replica out of the load balancer at once: a
// dependency counts as down once it has failed for ReadyGrace in a row
// (default 3 s; none before its first success, so a replica starting
// beside a sealed Vault is not ready at once), and a result is reused for ReadyCache (default 1 s), so a
// probe storm costs one round of checks a second.

// dependency is one readiness check; code names its failure.
type dependency struct {
	name, code string
	check      func(context.Context) error
}

type readiness struct {
	deps  []dependency
	cache time.Duration
	grace time.Duration
	now   func() time.Time

	mu        sync.Mutex
	checkedAt time.Time
	last      error
	since     map[string]time.Time // first failure of a run of failures
	seen      map[string]bool      // answered at least once (no grace before)
}

func newReadiness(deps []dependency, cache, grace time.Duration, now func() time.Time) *readiness {
	if now == nil {
		now = time.Now
	}
	return &readiness{deps: deps, cache: cache, grace: grace, now: now, since: map[string]time.Time{}, seen: map[string]bool{}}
}

// healthCheck asks a gRPC server's health service about "" (the whole
// server).
func healthCheck(conn grpc.ClientConnInterface) func(context.Context) error {
	c := healthpb.NewHealthClient(conn)
	return func(ctx context.Context) error {
		resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health %s", resp.GetStatus())
		}
		return nil
	}
}

// Ready checks every dependency (or returns the result of less than
// cache ago): nil, or a *serve.NotReady naming each dependency's state,
// its error the first failing dependency's code (503).
func (r *readiness) Ready(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !r.checkedAt.IsZero() && now.Sub(r.checkedAt) < r.cache {
		return r.last
	}
	errs := make([]error, len(r.deps))
	var wg sync.WaitGroup
	for i, d := range r.deps {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = d.check(ctx) }()
	}
	wg.Wait()
	now = r.now()
	states := map[string]string{}
	var down []string
	var first *apierr.Error
	for i, d := range r.deps {
		if errs[i] == nil {
			delete(r.since, d.name)
			r.seen[d.name] = true
			states[d.name] = "ok"
			continue
		}
		at, failing := r.since[d.name]
		if !failing {
			r.since[d.name], at = now, now
		}
		if r.seen[d.name] && now.Sub(at) < r.grace {
			states[d.name] = "ok" // failing for less than the grace: a blip so far
			continue
		}
		states[d.name] = d.code
		down = append(down, d.name+": "+d.code)
		if first == nil {
			first = apierr.Wrap(apierr.KindUnavailable, d.code, "", errs[i])
		}
	}
	r.checkedAt = now
	r.last = nil
	if first != nil {
		first.Message = "not ready, unavailable: " + strings.Join(down, "; ")
		r.last = &serve.NotReady{Err: first, Dependencies: states}
	}
	return r.last
}
