// Package cvcstoretest is the conformance suite of CVC stores (Redis and the
// in-process map). Values are opaque bytes.
package cvcstoretest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/vault/cvcstore"
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
			if err := b.Store.Put(ctx, "tok_1", []byte("sealed"), time.Hour); err != nil {
				t.Fatal(err)
			}
			v, err := b.Store.Take(ctx, "tok_1")
			if err != nil || string(v) != "sealed" {
				t.Fatalf("Take = %q, %v", v, err)
			}
			if _, err := b.Store.Take(ctx, "tok_1"); !errors.Is(err, cvcstore.ErrNotFound) {
				t.Fatalf("second Take: %v", err)
			}
		}},
		{"ttl reported", func(t *testing.T, b Backend) {
			if err := b.Store.Put(ctx, "tok_1", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			d, err := b.Store.TTL(ctx, "tok_1")
			if err != nil || d <= 59*time.Minute || d > time.Hour {
				t.Fatalf("TTL = %v, %v", d, err)
			}
			if _, err := b.Store.TTL(ctx, "tok_none"); !errors.Is(err, cvcstore.ErrNotFound) {
				t.Fatalf("TTL of missing: %v", err)
			}
		}},
		{"expired entry is gone", func(t *testing.T, b Backend) {
			if err := b.Store.Put(ctx, "tok_1", []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			b.Expire(t, "tok_1")
			if _, err := b.Store.Take(ctx, "tok_1"); !errors.Is(err, cvcstore.ErrNotFound) {
				t.Fatalf("Take after expiry: %v", err)
			}
		}},
		{"put replaces", func(t *testing.T, b Backend) {
			_ = b.Store.Put(ctx, "tok_1", []byte("a"), time.Hour)
			_ = b.Store.Put(ctx, "tok_1", []byte("b"), time.Hour)
			if v, _ := b.Store.Take(ctx, "tok_1"); string(v) != "b" {
				t.Fatalf("Take = %q", v)
			}
		}},
		{"delete", func(t *testing.T, b Backend) {
			_ = b.Store.Put(ctx, "tok_1", []byte("a"), time.Hour)
			if err := b.Store.Delete(ctx, "tok_1"); err != nil {
				t.Fatal(err)
			}
			if err := b.Store.Delete(ctx, "tok_1"); err != nil {
				t.Fatalf("deleting a missing entry: %v", err)
			}
			if _, err := b.Store.Take(ctx, "tok_1"); !errors.Is(err, cvcstore.ErrNotFound) {
				t.Fatalf("Take after delete: %v", err)
			}
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
			if got != 1 {
				t.Fatalf("value returned %d times", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newBackend(t)) })
	}
}
