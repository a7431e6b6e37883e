// Package redisstore keeps sealed CVCs in Redis (which must run without
// persistence: --save "" --appendonly no). Take uses GETDEL, so a CVC is
// returned at most once even under concurrent callers.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obolpay/obol/internal/batch"
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

// Open parses a redis:// URL, connects and checks the server answers.
func Open(ctx context.Context, url string) (*Store, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.PoolSize = 64
	opt.MaxRetries = 1
	rdb := redis.NewClient(opt)
	s := New(rdb, "obol:cvc:")
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Ping(pctx); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s is unreachable: %w", opt.Addr, err)
	}
	return s, nil
}

// New wraps an existing client (a cluster client works too).
func New(rdb redis.UniversalClient, prefix string) *Store {
	s := &Store{rdb: rdb, prefix: prefix}
	// Concurrent writes share one pipeline (one round trip).
	s.puts = batch.New(s.flushPuts, 128, 32)
	return s
}

func (s *Store) flushPuts(ctx context.Context, items []put) []error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	errs := make([]error, len(items))
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

// Client exposes the underlying client (for health checks and tests).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Put stores a sealed CVC with a TTL.
func (s *Store) Put(ctx context.Context, token string, value []byte, ttl time.Duration) error {
	return s.puts.Do(ctx, put{key: s.prefix + token, value: value, ttl: ttl})
}

// Take reads and deletes atomically.
func (s *Store) Take(ctx context.Context, token string) ([]byte, error) {
	b, err := s.rdb.GetDel(ctx, s.prefix+token).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, cvcstore.ErrNotFound
	}
	return b, err
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
