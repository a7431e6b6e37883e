// Package redisstore keeps sealed CVCs in Redis (which must run without
// persistence: --save "" --appendonly no), a single node or a Redis Cluster
// (see internal/redisconn for the URLs). Take uses GETDEL, so a CVC is
// returned at most once even under concurrent callers.
//
// On a cluster each CVC is its own key (spread over the slots), and Put
// makes sure a failover cannot lose a CVC it acknowledged: the SETs of a
// batch go to each key's primary on one connection, followed by WAIT for
// its replica (the same rule as Take's below: a connected replica that does
// not acknowledge within redisconn.ReplicaWait fails the Put with
// ErrNotReplicated, so the tokenization answers 503 storage_unavailable and
// makes no token; a primary with no replica connected accepts alone). Take
// also makes sure a failover cannot hand the CVC out a second time: the
// GETDEL is followed, on the same connection to the key's primary, by WAIT
// for one replica to acknowledge it. Redis replicates asynchronously, so
// without it a primary killed right after answering could leave a replica
// that still holds the CVC, and the promoted replica would answer it again.
// When the primary has a replica connected that did not acknowledge within
// redisconn.ReplicaWait, Take fails (the CVC is gone, never returned twice: the
// cardholder enters it again); when it has none (its replica was just
// promoted, or is down), there is no copy a failover could promote and the
// CVC is returned. The one case left is a replica that was disconnected at
// that moment and is promoted later with its older copy: Redis refuses to
// promote a replica whose data is older than cluster-replica-validity-factor
// times cluster-node-timeout, so keep the default factor (10) or lower.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/batch"
	"github.com/obolpay/obol/internal/redisconn"
	"github.com/obolpay/obol/vault/cvcstore"
)

var _ cvcstore.Store = (*Store)(nil)

// Store is a Redis-backed CVC store.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	puts   *batch.Batcher[put]
}

type put struct {
	key   string
	value []byte
	ttl   time.Duration
}

// ErrNotReplicated: on a cluster, the deletion of a taken CVC was not
// acknowledged by the replica in time; the CVC is discarded, not returned.
var ErrNotReplicated = fmt.Errorf("cvc store: the CVC was discarded: %w", redisconn.ErrNotReplicated)

// ErrPutNotReplicated: on a cluster, a stored CVC was not acknowledged by
// the primary's connected replica in time, so a failover could lose it; the
// Put fails (the tokenization answers unavailable and makes no token).
var ErrPutNotReplicated = fmt.Errorf("cvc store: the CVC was not stored on a replica: %w", redisconn.ErrNotReplicated)

// Open opens the Redis of OBOL_REDIS_URL (a single node, or a cluster with
// redis+cluster://), connects and checks the server answers.
func Open(ctx context.Context, url string) (*Store, error) {
	rdb, err := redisconn.Open(ctx, url, redisconn.Options{Var: "OBOL_CVC_REDIS_URL", ReadTimeout: 2 * time.Second, PoolSize: 64, MaxRetries: 1})
	if err != nil {
		return nil, err
	}
	return New(rdb, "obol:cvc:"), nil
}

// New wraps an existing client (a cluster client works too).
func New(rdb redis.UniversalClient, prefix string) *Store {
	s := &Store{rdb: rdb, prefix: prefix}
	s.puts = batch.New(s.flushPuts, 128, putFlushers(rdb))
	return s
}

// putFlushers is how many Put pipelines run at once. On a single node,
// one: the Puts that arrive while a pipeline is in flight wait for it and
// then share the next one, so a loaded vault makes one round trip per
// round trip's worth of tokenizations instead of one per tokenization
// (32 flushers, as before, took a Put each as it arrived, and no pipeline
// ever held two). A pipeline of SETs is answered as fast as one SET. On a
// cluster, 32: each flush waits for the replicas of the primaries its
// keys are on (WAIT, up to redisconn.ReplicaWait each), and one slow
// replica must not hold every other Put.
func putFlushers(rdb redis.UniversalClient) int {
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return 32
	}
	return 1
}

func (s *Store) flushPuts(ctx context.Context, items []put) []error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	errs := make([]error, len(items))
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		putReplicated(ctx, cc, items, errs)
		return errs
	}
	if len(items) == 1 {
		errs[0] = s.rdb.Set(ctx, items[0].key, items[0].value, items[0].ttl).Err()
		return errs
	}
	cmds := make([]*redis.StatusCmd, len(items))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, it := range items {
			cmds[i] = p.Set(ctx, it.key, it.value, it.ttl)
		}
		return nil
	})
	for i, c := range cmds {
		if errs[i] = c.Err(); errs[i] == nil && err != nil && !errors.Is(err, redis.Nil) {
			errs[i] = err
		}
	}
	return errs
}

// putReplicated writes items to their keys' primaries, one connection per
// primary (SETs, INFO replication and WAIT: redisconn.Replicate), and sets
// errs. A node that moved its slots or went away is retried once after a
// reload of the slot map (a SET sent twice stores the same value).
func putReplicated(ctx context.Context, cc *redis.ClusterClient, items []put, errs []error) {
	todo := make([]int, len(items))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; attempt < 2 && len(todo) > 0; attempt++ {
		if attempt > 0 {
			redisconn.ReloadNow(ctx, cc)
		}
		byNode := map[*redis.Client][]int{}
		var retry []int
		for _, i := range todo {
			node, err := cc.MasterForKey(ctx, items[i].key)
			if err != nil {
				errs[i] = err
				retry = append(retry, i)
				continue
			}
			byNode[node] = append(byNode[node], i)
		}
		for node, idx := range byNode {
			again, err := putOn(ctx, node, items, idx)
			for _, i := range idx {
				errs[i] = err
			}
			if again {
				retry = append(retry, idx...)
			}
		}
		todo = retry
	}
	for _, i := range todo {
		if redisconn.TopologyError(errs[i]) {
			cc.ReloadState(ctx)
			break
		}
	}
}

// putOn runs items[idx]'s SETs and INFO replication on one connection to
// a primary, then waits for its replica. again: nothing may have been
// written (the node moved the slots or refused the connection).
func putOn(ctx context.Context, node *redis.Client, items []put, idx []int) (again bool, err error) {
	conn := node.Conn()
	defer conn.Close()
	sets := make([]*redis.StatusCmd, len(idx))
	var info *redis.StringCmd
	_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range idx {
			sets[j] = p.Set(ctx, items[i].key, items[i].value, items[i].ttl)
		}
		info = p.Info(ctx, "replication")
		return nil
	})
	if err != nil {
		return redisconn.TopologyError(err), err
	}
	if err := redisconn.Replicate(ctx, conn, info); err != nil {
		return false, ErrPutNotReplicated
	}
	return false, nil
}

// Client exposes the underlying client (for health checks and tests).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Put stores a sealed CVC with a TTL.
func (s *Store) Put(ctx context.Context, token string, value []byte, ttl time.Duration) error {
	return s.puts.Do(ctx, put{key: s.prefix + token, value: value, ttl: ttl})
}

// Take reads and deletes atomically (on a cluster, replicated: see the
// package doc).
func (s *Store) Take(ctx context.Context, token string) ([]byte, error) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return takeReplicated(ctx, cc, s.prefix+token)
	}
	b, err := s.rdb.GetDel(ctx, s.prefix+token).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, cvcstore.ErrNotFound
	}
	return b, err
}

func takeReplicated(ctx context.Context, cc *redis.ClusterClient, key string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// The slot map may be stale (a failover): reload it and try
			// once more. A GETDEL sent twice cannot return the value
			// twice.
			redisconn.ReloadNow(ctx, cc)
		}
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			if attempt == 0 {
				continue
			}
			return nil, err
		}
		b, retry, err := takeOn(ctx, node, key)
		if err != nil && retry && attempt == 0 {
			continue
		}
		if err != nil && redisconn.TopologyError(err) {
			cc.ReloadState(ctx)
		}
		return b, err
	}
}

// takeOn runs GETDEL and INFO replication on one connection to the key's
// primary, then waits for the replica (redisconn.Replicate). retry: the
// GETDEL did not run (the node moved the slot, or refused the connection).
func takeOn(ctx context.Context, node *redis.Client, key string) (b []byte, retry bool, err error) {
	conn := node.Conn()
	defer conn.Close()
	var get *redis.StringCmd
	var info *redis.StringCmd
	_, err = conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.GetDel(ctx, key)
		info = p.Info(ctx, "replication")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, redisconn.TopologyError(err), err
	}
	b, err = get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, cvcstore.ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	if err := redisconn.Replicate(ctx, conn, info); err != nil {
		return nil, false, ErrNotReplicated
	}
	return b, false, nil
}

// Delete removes the value.
func (s *Store) Delete(ctx context.Context, token string) error {
	return s.rdb.Del(ctx, s.prefix+token).Err()
}

// TTL reports the remaining lifetime.
func (s *Store) TTL(ctx context.Context, token string) (time.Duration, error) {
	d, err := s.rdb.PTTL(ctx, s.prefix+token).Result()
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, cvcstore.ErrNotFound
	}
	return d, nil
}

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Close finishes queued writes and closes the client.
func (s *Store) Close() error {
	s.puts.Close()
	return s.rdb.Close()
}
