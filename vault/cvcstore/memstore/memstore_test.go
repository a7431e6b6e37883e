package memstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/vault/cvcstore/cvcstoretest"
	"github.com/obolpay/obol/vault/cvcstore/memstore"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func TestConformance(t *testing.T) {
	cvcstoretest.Run(t, func(t *testing.T) cvcstoretest.Backend {
		c := &clock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
		return cvcstoretest.Backend{
			Store:  memstore.New(c.Now),
			Expire: func(t *testing.T, _ string) { c.Add(24 * time.Hour) },
		}
	})
}
