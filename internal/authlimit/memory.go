package authlimit

import (
	"context"
	"sync"
	"time"
)

// maxMemoryKeys bounds the in-process counter: past it, expired windows are
// dropped, and if none expired the oldest window goes first.
const maxMemoryKeys = 100_000

// Memory is the in-process Counter (obol dev, and every replica's fallback
// when Redis is down).
type Memory struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*window
}

type window struct {
	n   int64
	end time.Time
}

var _ Counter = (*Memory)(nil)

// NewMemory returns an in-process counter on the clock now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, m: map[string]*window{}}
}

// Get implements Counter.
func (m *Memory) Get(_ context.Context, key string) (int64, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, now := m.m[key], m.now()
	if w == nil || !now.Before(w.end) {
		return 0, 0, nil
	}
	return w.n, w.end.Sub(now), nil
}

// Add implements Counter.
func (m *Memory) Add(_ context.Context, key string, d time.Duration) (int64, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	w := m.m[key]
	if w == nil || !now.Before(w.end) {
		if w == nil && len(m.m) >= maxMemoryKeys {
			m.evict(now)
		}
		w = &window{end: now.Add(d)}
		m.m[key] = w
	}
	w.n++
	return w.n, w.end.Sub(now), nil
}

func (m *Memory) evict(now time.Time) {
	var oldest string
	var oldestEnd time.Time
	for k, w := range m.m {
		if !now.Before(w.end) {
			delete(m.m, k)
			continue
		}
		if oldest == "" || w.end.Before(oldestEnd) {
			oldest, oldestEnd = k, w.end
		}
	}
	if len(m.m) >= maxMemoryKeys && oldest != "" {
		delete(m.m, oldest)
	}
}
