// Package memstore is the in-process CVC store of the embedded default: a map
// with expiry, never written to disk. Values are sealed ciphertext.
package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/obolpay/obol/vault/cvcstore"
)

var _ cvcstore.Store = (*Store)(nil)

type entry struct {
	value   []byte
	expires time.Time
}

// Store is an in-memory CVC store.
type Store struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]entry
}

// New returns a store using clock now (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, m: map[string]entry{}}
}

func (s *Store) getLocked(token string) (entry, bool) {
	e, ok := s.m[token]
	if ok && !s.now().Before(e.expires) {
		delete(s.m, token)
		return entry{}, false
	}
	return e, ok
}

// Put stores a value with a TTL, sweeping expired entries as it goes.
func (s *Store) Put(_ context.Context, token string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) > 0 && len(s.m)%1024 == 0 {
		for k, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, k)
			}
		}
	}
	s.m[token] = entry{value: append([]byte(nil), value...), expires: now.Add(ttl)}
	return nil
}

// Take reads and deletes atomically.
func (s *Store) Take(_ context.Context, token string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.getLocked(token)
	if !ok {
		return nil, cvcstore.ErrNotFound
	}
	delete(s.m, token)
	return e.value, nil
}

// Delete removes the value.
func (s *Store) Delete(_ context.Context, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, token)
	return nil
}

// TTL reports the remaining lifetime.
func (s *Store) TTL(_ context.Context, token string) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.getLocked(token)
	if !ok {
		return 0, cvcstore.ErrNotFound
	}
	return e.expires.Sub(s.now()), nil
}

// Ping always succeeds.
func (s *Store) Ping(context.Context) error { return nil }
