// Package cvcstoretest is the conformance suite of CVC stores (Redis and the
// in-process map). Values are opaque bytes.
package cvcstoretest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/vault/cvcstore"
	"github.com/stretchr/testify/require"
)

// Backend is a store under test plus a way to make an entry expire now
// (advance a fake clock, or shorten the TTL on a real server).
type Backend struct {
	Store  cvcstore.Store
	Expire func(t *testing.T, token string)
}

// Run runs the suite; newBackend returns an empty backend per call.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	ctx := context.Background()
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"put then take once", func(t *testing.T, b Backend) {
			require.NoError(t, b.Store.Put(ctx, "tok_1", []byte("sealed"), time.Hour))
			v, err := b.Store.Take(ctx, "tok_1")
			require.NoError(t, err)
			require.Equal(t, "sealed", string(v), "Take")
			_, err = b.Store.Take(ctx, "tok_1")
			require.ErrorIs(t, err, cvcstore.ErrNotFound, "second Take")
		}},
		{"ttl reported", func(t *testing.T, b Backend) {
			require.NoError(t, b.Store.Put(ctx, "tok_1", []byte("v"), time.Hour))
			d, err := b.Store.TTL(ctx, "tok_1")
			require.NoError(t, err)
			require.Greater(t, d, 59*time.Minute, "TTL")
			require.LessOrEqual(t, d, time.Hour, "TTL")
			_, err = b.Store.TTL(ctx, "tok_none")
			require.ErrorIs(t, err, cvcstore.ErrNotFound, "TTL of missing")
		}},
		{"expired entry is gone", func(t *testing.T, b Backend) {
			require.NoError(t, b.Store.Put(ctx, "tok_1", []byte("v"), time.Hour))
			b.Expire(t, "tok_1")
			_, err := b.Store.Take(ctx, "tok_1")
			require.ErrorIs(t, err, cvcstore.ErrNotFound, "Take after expiry")
		}},
		{"put replaces", func(t *testing.T, b Backend) {
			_ = b.Store.Put(ctx, "tok_1", []byte("a"), time.Hour)
			_ = b.Store.Put(ctx, "tok_1", []byte("b"), time.Hour)
			v, _ := b.Store.Take(ctx, "tok_1")
			require.Equal(t, "b", string(v), "Take")
		}},
		{"delete", func(t *testing.T, b Backend) {
			_ = b.Store.Put(ctx, "tok_1", []byte("a"), time.Hour)
			require.NoError(t, b.Store.Delete(ctx, "tok_1"))
			require.NoError(t, b.Store.Delete(ctx, "tok_1"), "deleting a missing entry")
			_, err := b.Store.Take(ctx, "tok_1")
			require.ErrorIs(t, err, cvcstore.ErrNotFound, "Take after delete")
		}},
		{"concurrent takes return the value once", func(t *testing.T, b Backend) {
			_ = b.Store.Put(ctx, "tok_1", []byte("once"), time.Hour)
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := 0
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := b.Store.Take(ctx, "tok_1"); err == nil {
						mu.Lock()
						got++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			require.Equal(t, 1, got, "times the value was returned")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newBackend(t)) })
	}
}
