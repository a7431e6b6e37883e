package rewrap_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/rewrap"
)

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Action+"/"+e.Actor)
	}
	return out
}

// TestAuto: a trigger rewraps in the background and then runs the jobs
// that follow, in order; what a job did is recorded in the audit trail,
// a job that did nothing is not, and a failing job is logged with how to
// run it by hand without stopping the next one. Disabled, a trigger does
// nothing.
func TestAuto(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := seed(t, 5)
		var logs bytes.Buffer
		rec := &recorder{}
		a := rewrap.NewAuto(&fakeKS{latest: 2}, st, slog.New(slog.NewTextHandler(&logs, nil)), true, rec.record)
		var order []string
		a.Then = []rewrap.Job{
			{Name: "idle", Run: func(context.Context) (audit.Event, []any, error) {
				order = append(order, "idle")
				return audit.Event{}, nil, nil
			}},
			{Name: "broken", Hint: "run it by hand", Run: func(context.Context) (audit.Event, []any, error) {
				order = append(order, "broken")
				return audit.Event{}, nil, errors.New("vault sealed")
			}},
			{Name: "refingerprint", Run: func(context.Context) (audit.Event, []any, error) {
				order = append(order, "refingerprint")
				return audit.Event{Action: audit.ActionRefingerprint, Detail: "rewritten=1"}, []any{"rewritten", 1}, nil
			}},
		}
		a.Trigger(context.Background())
		synctest.Wait()
		assert.Equal(t, []string{"idle", "broken", "refingerprint"}, order)
		assert.Equal(t, []string{audit.ActionRewrap + "/vaultd", audit.ActionRefingerprint + "/vaultd"}, rec.actions())
		assert.EqualValues(t, 5, a.Progress().Rewrapped.Load())
		assert.Contains(t, logs.String(), "broken failed; run it by hand")
		assert.Contains(t, logs.String(), "rewrap done")

		off := rewrap.NewAuto(&fakeKS{latest: 3}, st, slog.New(slog.DiscardHandler), false, rec.record)
		off.Trigger(context.Background())
		synctest.Wait()
		assert.Zero(t, off.Progress().Runs.Load(), "disabled: no run")
		require.Len(t, rec.actions(), 2)
	})
}
