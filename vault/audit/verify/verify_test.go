package verify_test

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/audit/verify"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/sqlite"
)

// rewritten serves a stored chain with one event's detail changed and
// every hash from there recomputed (what someone with write access to the
// database could do).
type rewritten struct {
	store.Store
	seq int64
}

func (r rewritten) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error) {
	evs, err := r.Store.ListAudit(ctx, f)
	if err != nil || f.AfterSeq != 0 {
		return nil, err
	}
	for i := range evs {
		if evs[i].Seq == r.seq {
			evs[i].Detail = "rewritten"
		}
	}
	audit.Chain(0, nil, evs)
	return evs, nil
}

func TestChain(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "vault.db"))
	require.NoError(t, err)
	defer st.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var evs []audit.Event
	for i := range 5 {
		evs = append(evs, audit.Event{At: at.Add(time.Duration(i) * time.Second), Actor: "obol", Action: audit.ActionRewrap, Detail: "run"})
	}
	stored, err := st.AppendAudit(ctx, evs)
	require.NoError(t, err)
	head := stored[len(stored)-1]
	good := &transit.AuditAnchor{Seq: 3, Hash: hex.EncodeToString(stored[2].Hash), At: "2026-12-01T12:00:03Z"}

	tests := []struct {
		name      string
		st        store.Store
		anchor    *transit.AuditAnchor
		anchored  bool
		problemAt int64 // 0: none
		reason    string
	}{
		{"intact, no anchor", st, nil, false, 0, ""},
		{"intact, anchored", st, good, true, 0, ""},
		{"rewritten after the anchor", rewritten{st, 4}, good, true, 0, ""},
		{"rewritten before the anchor", rewritten{st, 2}, good, true, 3, "history was rewritten"},
		{"anchored event missing", st, &transit.AuditAnchor{Seq: 9, Hash: "00"}, true, 9, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := verify.Chain(ctx, tt.st, tt.anchor)
			require.NoError(t, err)
			assert.EqualValues(t, 5, r.Checked)
			assert.Equal(t, tt.anchored, r.AnchorChecked)
			if tt.problemAt == 0 {
				assert.Empty(t, r.Problems)
				if tt.st == store.Store(st) {
					assert.Equal(t, head.Seq, r.HeadSeq)
					assert.Equal(t, hex.EncodeToString(head.Hash), r.HeadHash)
				}
				return
			}
			require.Len(t, r.Problems, 1)
			assert.Equal(t, tt.problemAt, r.Problems[0].Seq)
			assert.Contains(t, r.Problems[0].Reason, tt.reason)
		})
	}
}
