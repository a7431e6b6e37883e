package engine

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
)

// RuleSetRecord is one version of the rule set.
type RuleSetRecord struct {
	Version   string
	YAML      string
	Source    string
	Rules     int
	CreatedAt time.Time
}

// ErrNotFound: no such version, or no rule set yet.
var ErrNotFound = errors.New("not found")

// State keeps rule-set history, lists and recorded decisions.
type State interface {
	PutRuleSet(ctx context.Context, r RuleSetRecord) error
	ActiveRuleSet(ctx context.Context) (RuleSetRecord, error)
	GetRuleSet(ctx context.Context, version string) (RuleSetRecord, error)
	ListRuleSets(ctx context.Context, limit int) ([]RuleSetRecord, error)
	AddToList(ctx context.Context, list string, values []string) error
	RemoveFromList(ctx context.Context, list string, values []string) error
	Lists(ctx context.Context) (map[string][]string, error)
	RecordDecisions(ctx context.Context, ds []*riskv1.Decision) error
	RecentDecisions(ctx context.Context, limit int) ([]*riskv1.Decision, error)
}

// RedisState keeps state in Redis (rule sets and lists should live on a
// Redis with persistence; the CVC Redis of the vault must not be reused).
type RedisState struct {
	rdb    redis.UniversalClient
	prefix string
	// MaxDecisions caps the recorded-decision stream (default 100,000).
	MaxDecisions int64
}

// NewRedisState uses keys under prefix.
func NewRedisState(rdb redis.UniversalClient, prefix string) *RedisState {
	return &RedisState{rdb: rdb, prefix: prefix, MaxDecisions: 100_000}
}

func (s *RedisState) PutRuleSet(ctx context.Context, r RuleSetRecord) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.prefix+"ruleset:"+r.Version, "yaml", r.YAML, "source", r.Source, "rules", r.Rules, "created_at", r.CreatedAt.UTC().Format(time.RFC3339Nano))
		p.LPush(ctx, s.prefix+"rulesets", r.Version)
		p.LTrim(ctx, s.prefix+"rulesets", 0, 999)
		p.Set(ctx, s.prefix+"ruleset:active", r.Version, 0)
		return nil
	})
	return err
}

func (s *RedisState) GetRuleSet(ctx context.Context, version string) (RuleSetRecord, error) {
	m, err := s.rdb.HGetAll(ctx, s.prefix+"ruleset:"+version).Result()
	if err != nil {
		return RuleSetRecord{}, err
	}
	if len(m) == 0 {
		return RuleSetRecord{}, ErrNotFound
	}
	n, _ := strconv.Atoi(m["rules"])
	at, _ := time.Parse(time.RFC3339Nano, m["created_at"])
	return RuleSetRecord{Version: version, YAML: m["yaml"], Source: m["source"], Rules: n, CreatedAt: at}, nil
}

func (s *RedisState) ActiveRuleSet(ctx context.Context) (RuleSetRecord, error) {
	v, err := s.rdb.Get(ctx, s.prefix+"ruleset:active").Result()
	if errors.Is(err, redis.Nil) {
		return RuleSetRecord{}, ErrNotFound
	}
	if err != nil {
		return RuleSetRecord{}, err
	}
	return s.GetRuleSet(ctx, v)
}

func (s *RedisState) ListRuleSets(ctx context.Context, limit int) ([]RuleSetRecord, error) {
	vs, err := s.rdb.LRange(ctx, s.prefix+"rulesets", 0, int64(limit)-1).Result()
	if err != nil {
		return nil, err
	}
	var out []RuleSetRecord
	for _, v := range vs {
		r, err := s.GetRuleSet(ctx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *RedisState) AddToList(ctx context.Context, list string, values []string) error {
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	if err := s.rdb.SAdd(ctx, s.prefix+"list:"+list, args...).Err(); err != nil {
		return err
	}
	return s.rdb.SAdd(ctx, s.prefix+"lists", list).Err()
}

func (s *RedisState) RemoveFromList(ctx context.Context, list string, values []string) error {
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	return s.rdb.SRem(ctx, s.prefix+"list:"+list, args...).Err()
}

func (s *RedisState) Lists(ctx context.Context) (map[string][]string, error) {
	names, err := s.rdb.SMembers(ctx, s.prefix+"lists").Result()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, n := range names {
		vs, err := s.rdb.SMembers(ctx, s.prefix+"list:"+n).Result()
		if err != nil {
			return nil, err
		}
		sort.Strings(vs)
		out[n] = vs
	}
	return out, nil
}

func (s *RedisState) RecordDecisions(ctx context.Context, ds []*riskv1.Decision) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, d := range ds {
			b, err := proto.Marshal(d)
			if err != nil {
				return err
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: s.prefix + "decisions", MaxLen: s.MaxDecisions, Approx: true, Values: []any{"d", b}})
		}
		return nil
	})
	return err
}

func (s *RedisState) RecentDecisions(ctx context.Context, limit int) ([]*riskv1.Decision, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.prefix+"decisions", "+", "-", int64(limit)).Result()
	if err != nil {
		return nil, err
	}
	out := make([]*riskv1.Decision, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["d"].(string)
		d := &riskv1.Decision{}
		if err := proto.Unmarshal([]byte(raw), d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// MemoryState is the in-process state of the embedded default.
type MemoryState struct {
	mu        sync.Mutex
	rulesets  []RuleSetRecord // newest last
	active    string
	lists     map[string]map[string]bool
	decisions []*riskv1.Decision
	max       int
}

// NewMemoryState keeps up to maxDecisions recorded decisions.
func NewMemoryState(maxDecisions int) *MemoryState {
	return &MemoryState{lists: map[string]map[string]bool{}, max: maxDecisions}
}

func (m *MemoryState) PutRuleSet(_ context.Context, r RuleSetRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rulesets = append(m.rulesets, r)
	m.active = r.Version
	return nil
}

func (m *MemoryState) GetRuleSet(_ context.Context, v string) (RuleSetRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.rulesets) - 1; i >= 0; i-- {
		if m.rulesets[i].Version == v {
			return m.rulesets[i], nil
		}
	}
	return RuleSetRecord{}, ErrNotFound
}

func (m *MemoryState) ActiveRuleSet(ctx context.Context) (RuleSetRecord, error) {
	m.mu.Lock()
	v := m.active
	m.mu.Unlock()
	if v == "" {
		return RuleSetRecord{}, ErrNotFound
	}
	return m.GetRuleSet(ctx, v)
}

func (m *MemoryState) ListRuleSets(_ context.Context, limit int) ([]RuleSetRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []RuleSetRecord
	for i := len(m.rulesets) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, m.rulesets[i])
	}
	return out, nil
}

func (m *MemoryState) AddToList(_ context.Context, list string, values []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lists[list] == nil {
		m.lists[list] = map[string]bool{}
	}
	for _, v := range values {
		m.lists[list][v] = true
	}
	return nil
}

func (m *MemoryState) RemoveFromList(_ context.Context, list string, values []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range values {
		delete(m.lists[list], v)
	}
	return nil
}

func (m *MemoryState) Lists(context.Context) (map[string][]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for n, set := range m.lists {
		for v := range set {
			out[n] = append(out[n], v)
		}
		sort.Strings(out[n])
	}
	return out, nil
}

func (m *MemoryState) RecordDecisions(_ context.Context, ds []*riskv1.Decision) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decisions = append(m.decisions, ds...)
	if len(m.decisions) > m.max {
		m.decisions = m.decisions[len(m.decisions)-m.max:]
	}
	return nil
}

func (m *MemoryState) RecentDecisions(_ context.Context, limit int) ([]*riskv1.Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*riskv1.Decision
	for i := len(m.decisions) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, m.decisions[i])
	}
	return out, nil
}
