package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/rules"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEngine(t *testing.T, st State, fs features.Store) *Engine {
	t.Helper()
	e, err := New(context.Background(), Config{Features: fs, State: st, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestReplicasConverge: a rule set put through one replica's API becomes
// active on another replica sharing the state.
func TestReplicasConverge(t *testing.T) {
	st := NewMemoryState(100)
	a, b := newEngine(t, st, features.NewMemory()), newEngine(t, st, features.NewMemory())
	if a.Active().Version != b.Active().Version {
		t.Fatal("replicas start on different sets")
	}
	set, err := a.PutRuleSet(context.Background(), []byte("rules:\n  - name: all\n    expression: true\n    action: review\n"), "api")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SyncActive(context.Background()); err != nil || b.Active().Version != set.Version {
		t.Fatalf("replica b: %v %s", err, b.Active().Version)
	}
}

type brokenFeatures struct{}

func (brokenFeatures) Observe(context.Context, features.Observation, bool) (features.Result, error) {
	return features.Result{}, errors.New("connection refused")
}
func (brokenFeatures) Ping(context.Context) error { return errors.New("connection refused") }

// TestFallbackIsMarkedAndNeverAllows: with the feature store failing (an
// edge case mocked here; riskd's tests stop a real Redis), the merchant's
// fallback applies and is marked.
func TestFallbackIsMarkedAndNeverAllows(t *testing.T) {
	e, err := New(context.Background(), Config{Features: brokenFeatures{}, State: NewMemoryState(10), Logger: quiet(), Fallback: map[string]string{"mer_b": rules.Block}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ merchant, want string }{{"mer_a", rules.Review}, {"mer_b", rules.Block}} {
		d := e.Evaluate(context.Background(), &riskv1.Payment{MerchantId: tt.merchant, Amount: 1, Currency: "USD"}, false)
		if !d.GetFallback() || d.GetAction() != tt.want || d.GetFallbackReason() == "" {
			t.Fatalf("%s: %v", tt.merchant, d)
		}
	}
	if _, err := New(context.Background(), Config{Features: brokenFeatures{}, State: NewMemoryState(10), Logger: quiet(), Fallback: map[string]string{"m": "maybe"}}); err == nil {
		t.Fatal("an invalid fallback action was accepted")
	}
}

// TestDryRunsAreNotRecorded: only real evaluations feed backtests.
func TestDryRunsAreNotRecorded(t *testing.T) {
	st := NewMemoryState(100)
	e := newEngine(t, st, features.NewMemory())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Watch(ctx, time.Hour)
	p := &riskv1.Payment{MerchantId: "m", Amount: 100, Currency: "USD", Fingerprint: "fp"}
	e.Evaluate(ctx, p, true)
	e.Evaluate(ctx, p, false)
	e.Evaluate(ctx, p, true)
	bt, err := e.Backtest(ctx, rules.DefaultYAML(), 10)
	if err != nil || bt.GetReplayed() != 1 {
		t.Fatalf("backtest replayed %d, %v; want 1", bt.GetReplayed(), err)
	}
}
