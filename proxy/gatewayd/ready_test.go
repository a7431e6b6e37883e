package gatewayd

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/serve"
)

// TestReadinessGraceAndCache: a dependency that fails is reported after it
// has failed for the grace in a row (at once if it never answered), the
// answer names every dependency with its code, a result is reused for the
// cache period, and a recovery is ready again.
func TestReadinessGraceAndCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	down := map[string]bool{}
	var calls atomic.Int64 // the checks run concurrently
	check := func(name string) func(context.Context) error {
		return func(context.Context) error {
			calls.Add(1)
			if down[name] {
				return errors.New(name + " down")
			}
			return nil
		}
	}
	r := newReadiness([]dependency{
		{"database", apierr.CodeStorageUnavailable, check("database")},
		{"vault", "vault_unavailable", check("vault")},
		{"risk", "risk_unavailable", check("risk")},
	}, time.Second, 3*time.Second, clock)
	ctx := context.Background()
	notReady := func(t *testing.T) *serve.NotReady {
		t.Helper()
		err := r.Ready(ctx)
		var nr *serve.NotReady
		require.True(t, errors.As(err, &nr), "want NotReady, got %v", err)
		assert.Equal(t, 503, nr.Err.HTTPStatus())
		return nr
	}
	steps := []struct {
		name    string
		advance time.Duration
		down    []string
		// want: nil for ready, else the code and each dependency's state
		want  map[string]string
		code  string
		calls int64 // checks run by this step
	}{
		{"all up", 0, nil, nil, "", 3},
		{"cached for a second", 500 * time.Millisecond, []string{"vault"}, nil, "", 0},
		{"vault fails: within the grace", 600 * time.Millisecond, []string{"vault"}, nil, "", 3},
		{"still within the grace", 2 * time.Second, []string{"vault"}, nil, "", 3},
		{"failing for the grace: not ready", 1100 * time.Millisecond, []string{"vault"}, map[string]string{"database": "ok", "vault": "vault_unavailable", "risk": "ok"}, "vault_unavailable", 3},
		{"risk blips meanwhile", 1100 * time.Millisecond, []string{"vault", "risk"}, map[string]string{"database": "ok", "vault": "vault_unavailable", "risk": "ok"}, "vault_unavailable", 3},
		{"both down for the grace: first named is the code", 3 * time.Second, []string{"vault", "risk"}, map[string]string{"database": "ok", "vault": "vault_unavailable", "risk": "risk_unavailable"}, "vault_unavailable", 3},
		{"recovered", 1100 * time.Millisecond, nil, nil, "", 3},
		{"a blip after recovery restarts the grace", 1100 * time.Millisecond, []string{"database"}, nil, "", 3},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now = now.Add(st.advance)
			down = map[string]bool{}
			for _, d := range st.down {
				down[d] = true
			}
			calls.Store(0)
			if st.want == nil {
				require.NoError(t, r.Ready(ctx))
			} else {
				nr := notReady(t)
				assert.Equal(t, st.code, nr.Err.Code)
				assert.Equal(t, st.want, nr.Dependencies)
				for name, state := range st.want {
					if state != "ok" {
						assert.Contains(t, nr.Err.Message, name+": "+state)
					}
				}
			}
			assert.Equal(t, st.calls, calls.Load(), "checks run")
		})
	}
	t.Run("never answered: no grace", func(t *testing.T) {
		fresh := newReadiness([]dependency{{"ledger", "ledger_unavailable", func(context.Context) error { return errors.New("refused") }}}, time.Second, time.Hour, clock)
		err := fresh.Ready(ctx)
		require.Error(t, err)
		assert.Equal(t, "ledger_unavailable", apierr.From(err).Code)
	})
}
