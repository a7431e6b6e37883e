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

	"github.com/obolpay/obol/vault/cvcstore"
)

var _ cvcstore.Store = (*Store)(nil)

// Store is a Redis-backed CVC store.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
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
	return &Store{rdb: rdb, prefix: prefix}
}

// Client exposes the underlying client (for health checks and tests).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Put stores a sealed CVC with a TTL.
func (s *Store) Put(ctx context.Context, token string, value []byte, ttl time.Duration) error {
	return s.rdb.Set(ctx, s.prefix+token, value, ttl).Err()
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

// Close closes the client.
func (s *Store) Close() error { return s.rdb.Close() }
