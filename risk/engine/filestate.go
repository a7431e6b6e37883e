package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/obolpay/obol/internal/atomicfile"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
)

// FileState is the state of the embedded default (`obol dev`) kept across
// restarts: rule-set history, the active version and the lists live in one
// JSON file, rewritten atomically (temporary file, fsync, rename) on every
// change, so a crash leaves the previous or the new state, never half of
// one. Recorded decisions (for backtests) stay in memory. It holds no card
// data (rule sets and lists are PAN-free; list values are refused when they
// look like a card number).
type FileState struct {
	path string
	mu   sync.Mutex // serialises writes of the file
	mem  *MemoryState
}

var _ State = (*FileState)(nil)

type fileSnapshot struct {
	RuleSets []fileRuleSet       `json:"rule_sets"` // oldest first
	Active   string              `json:"active"`
	Lists    map[string][]string `json:"lists"`
}

type fileRuleSet struct {
	Version   string    `json:"version"`
	YAML      string    `json:"yaml"`
	Source    string    `json:"source"`
	Rules     int       `json:"rules"`
	CreatedAt time.Time `json:"created_at"`
}

// OpenFileState loads (or starts) the state file at path, keeping up to
// maxDecisions recorded decisions in memory.
func OpenFileState(path string, maxDecisions int) (*FileState, error) {
	s := &FileState{path: path, mem: NewMemoryState(maxDecisions)}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("risk state %s: %w", path, err)
	}
	var snap fileSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("risk state %s: %w", path, err)
	}
	for _, r := range snap.RuleSets {
		s.mem.rulesets = append(s.mem.rulesets, RuleSetRecord(r))
	}
	s.mem.active = snap.Active
	for n, vs := range snap.Lists {
		set := map[string]bool{}
		for _, v := range vs {
			set[v] = true
		}
		s.mem.lists[n] = set
	}
	return s, nil
}

// save writes the current state; the caller holds s.mu.
func (s *FileState) save(ctx context.Context) error {
	lists, _ := s.mem.Lists(ctx)
	s.mem.mu.Lock()
	snap := fileSnapshot{Active: s.mem.active, Lists: lists}
	for _, r := range s.mem.rulesets {
		snap.RuleSets = append(snap.RuleSets, fileRuleSet(r))
	}
	s.mem.mu.Unlock()
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, b)
}

// change applies fn to the in-memory state and writes the file; if the
// write fails the change is undone (the caller gets the error, nothing is
// half-applied).
func (s *FileState) change(ctx context.Context, fn, undo func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := fn(); err != nil {
		return err
	}
	if err := s.save(ctx); err != nil {
		_ = undo()
		return fmt.Errorf("risk state %s: %w", s.path, err)
	}
	return nil
}

func (s *FileState) PutRuleSet(ctx context.Context, r RuleSetRecord) error {
	s.mem.mu.Lock()
	prevSets, prevActive := append([]RuleSetRecord(nil), s.mem.rulesets...), s.mem.active
	s.mem.mu.Unlock()
	return s.change(ctx, func() error { return s.mem.PutRuleSet(ctx, r) }, func() error {
		s.mem.mu.Lock()
		s.mem.rulesets, s.mem.active = prevSets, prevActive
		s.mem.mu.Unlock()
		return nil
	})
}

func (s *FileState) ActiveRuleSet(ctx context.Context) (RuleSetRecord, error) {
	return s.mem.ActiveRuleSet(ctx)
}

func (s *FileState) GetRuleSet(ctx context.Context, v string) (RuleSetRecord, error) {
	return s.mem.GetRuleSet(ctx, v)
}

func (s *FileState) ListRuleSets(ctx context.Context, limit int) ([]RuleSetRecord, error) {
	return s.mem.ListRuleSets(ctx, limit)
}

func (s *FileState) snapshotList(list string) map[string]bool {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	cur, ok := s.mem.lists[list]
	if !ok {
		return nil
	}
	cp := make(map[string]bool, len(cur))
	for v := range cur {
		cp[v] = true
	}
	return cp
}

func (s *FileState) restoreList(list string, prev map[string]bool) func() error {
	return func() error {
		s.mem.mu.Lock()
		defer s.mem.mu.Unlock()
		if prev == nil {
			delete(s.mem.lists, list)
		} else {
			s.mem.lists[list] = prev
		}
		return nil
	}
}

func (s *FileState) AddToList(ctx context.Context, list string, values []string) error {
	prev := s.snapshotList(list)
	return s.change(ctx, func() error { return s.mem.AddToList(ctx, list, values) }, s.restoreList(list, prev))
}

func (s *FileState) RemoveFromList(ctx context.Context, list string, values []string) error {
	prev := s.snapshotList(list)
	return s.change(ctx, func() error { return s.mem.RemoveFromList(ctx, list, values) }, s.restoreList(list, prev))
}

func (s *FileState) Lists(ctx context.Context) (map[string][]string, error) { return s.mem.Lists(ctx) }

func (s *FileState) RecordDecisions(ctx context.Context, ds []*riskv1.Decision) error {
	return s.mem.RecordDecisions(ctx, ds)
}

func (s *FileState) RecentDecisions(ctx context.Context, limit int) ([]*riskv1.Decision, error) {
	return s.mem.RecentDecisions(ctx, limit)
}
