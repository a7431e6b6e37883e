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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEngine(t *testing.T, st State, fs features.Store) *Engine {
	t.Helper()
	e, err := New(context.Background(), Config{Features: fs, State: st, Logger: quiet()})
	require.NoError(t, err)
	return e
}

// TestReplicasConverge: a rule set put through one replica's API becomes
// active on another replica sharing the state.
func TestReplicasConverge(t *testing.T) {
	st := NewMemoryState(100)
	a, b := newEngine(t, st, features.NewMemory()), newEngine(t, st, features.NewMemory())
	require.Equal(t, a.Active().Version, b.Active().Version, "replicas start on different sets")
	set, err := a.PutRuleSet(context.Background(), []byte("rules:\n  - name: all\n    expression: true\n    action: review\n"), "api")
	require.NoError(t, err)
	require.NoError(t, b.SyncActive(context.Background()), "replica b")
	require.Equal(t, set.Version, b.Active().Version, "replica b")
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
	require.NoError(t, err)
	for _, tt := range []struct{ merchant, want string }{{"mer_a", rules.Review}, {"mer_b", rules.Block}} {
		d := e.Evaluate(context.Background(), &riskv1.Payment{MerchantId: tt.merchant, Amount: 1, Currency: "USD"}, false)
		assert.True(t, d.GetFallback(), "%s: %v", tt.merchant, d)
		assert.Equal(t, tt.want, d.GetAction(), "%s: %v", tt.merchant, d)
		assert.NotEmpty(t, d.GetFallbackReason(), "%s: %v", tt.merchant, d)
	}
	_, err = New(context.Background(), Config{Features: brokenFeatures{}, State: NewMemoryState(10), Logger: quiet(), Fallback: map[string]string{"m": "maybe"}})
	require.Error(t, err, "an invalid fallback action was accepted")
	_, err = New(context.Background(), Config{Features: brokenFeatures{}, State: NewMemoryState(10), Logger: quiet(), DefaultFallback: "Block"})
	require.ErrorContains(t, err, "default fallback action", "an invalid default fallback action was accepted (it would be the decision during a Redis outage)")
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
	require.NoError(t, err)
	require.EqualValues(t, 1, bt.GetReplayed(), "backtest replayed")
}
