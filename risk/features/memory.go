package features

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Memory is the in-process feature store of the embedded default. Distinct
// counts per bucket are exact here (Redis uses HyperLogLog, within about 1%).
type Memory struct {
	mu       sync.Mutex
	counters map[string]*[2]int64 // key -> count, sum
	sets     map[string]map[string]struct{}
	first    map[string]int64
	expiry   map[string]int64
	sweepAt  int64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{counters: map[string]*[2]int64{}, sets: map[string]map[string]struct{}{}, first: map[string]int64{}, expiry: map[string]int64{}}
}

// Ping always succeeds.
func (m *Memory) Ping(context.Context) error { return nil }

func (m *Memory) sweep(now int64) {
	if now < m.sweepAt {
		return
	}
	m.sweepAt = now + 60
	for k, exp := range m.expiry {
		if exp <= now {
			delete(m.counters, k)
			delete(m.sets, k)
			delete(m.expiry, k)
		}
	}
}

// Observe mirrors the Redis script.
func (m *Memory) Observe(_ context.Context, o Observation, record bool) (Result, error) {
	now := o.Now.Unix()
	vals := o.values()
	var present [numDims]bool
	var raw [numDims][3]bucketCounts
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	if record && o.PaymentID != "" {
		seen := "seen:" + o.PaymentID
		if m.expiry[seen] > now {
			record = false
		} else {
			m.expiry[seen] = now + int64(SeenFor/time.Second)
		}
	}
	for d := 0; d < numDims; d++ {
		present[d] = vals[d] != ""
		if !present[d] {
			continue
		}
		for wi, w := range Windows {
			base := "v:" + dimNames[d] + ":" + vals[d] + ":" + strconv.FormatInt(w, 10) + ":"
			cur, prev := base+strconv.FormatInt(now/w, 10), base+strconv.FormatInt(now/w-1, 10)
			if record {
				c := m.counters[cur]
				if c == nil {
					c = &[2]int64{}
					m.counters[cur] = c
				}
				c[0]++
				c[1] += o.Amount
				m.expiry[cur] = now + 2*w + 60
			}
			var b bucketCounts
			if c := m.counters[cur]; c != nil {
				b.curCount, b.curSum = c[0], c[1]
			}
			if p := m.counters[prev]; p != nil {
				b.prevCount, b.prevSum = p[0], p[1]
			}
			raw[d][wi] = b
		}
	}
	var distinct [2][2]int64
	for di, d := range []int{DimIP, DimDevice} {
		if !present[d] || o.Fingerprint == "" {
			continue
		}
		for wi, w := range Windows[1:] {
			base := "d:" + dimNames[d] + ":" + vals[d] + ":" + strconv.FormatInt(w, 10) + ":"
			cur, prev := base+strconv.FormatInt(now/w, 10), base+strconv.FormatInt(now/w-1, 10)
			if record {
				s := m.sets[cur]
				if s == nil {
					s = map[string]struct{}{}
					m.sets[cur] = s
				}
				s[o.Fingerprint] = struct{}{}
				m.expiry[cur] = now + 2*w + 60
			}
			distinct[di][wi], _ = estimate(bucketCounts{curCount: int64(len(m.sets[cur])), prevCount: int64(len(m.sets[prev]))}, w, now)
		}
	}
	var first int64
	if o.Fingerprint != "" {
		fk := o.Merchant + ":" + o.Fingerprint
		if _, ok := m.first[fk]; !ok && record {
			m.first[fk] = now
		}
		first = m.first[fk]
	}
	return assemble(raw, distinct, first, now, present), nil
}
