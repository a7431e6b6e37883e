package anchor_test

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/audit/anchor"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/sqlite"
)

// kv records the anchors written (a stand-in for Vault's KV; vaultd's
// TestAuditTrail anchors in a real Vault). It fails while down is set.
type kv struct {
	mu      sync.Mutex
	down    bool
	written []transit.AuditAnchor
}

func (k *kv) WriteAuditAnchor(_ context.Context, a transit.AuditAnchor) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return errors.New("vault sealed")
	}
	k.written = append(k.written, a)
	return nil
}

func (k *kv) seqs() []int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []int64
	for _, a := range k.written {
		out = append(out, a.Seq)
	}
	return out
}

// TestRun: the head is anchored once each time it moves, with its hash; a
// failed write is retried on the next tick.
func TestRun(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
	require.NoError(t, err)
	defer st.Close()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		w := &kv{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			anchor.Run(ctx, st, w, time.Second, slog.New(slog.DiscardHandler))
		}()
		appendEvent := func() audit.Event {
			evs, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "obol", Action: audit.ActionRewrap}})
			require.NoError(t, err)
			return evs[0]
		}
		tick := func() {
			time.Sleep(time.Second) // fake time: exactly one tick
			synctest.Wait()
		}
		tick()
		assert.Empty(t, w.seqs(), "no chain yet: nothing to anchor")
		first := appendEvent()
		tick()
		tick()
		assert.Equal(t, []int64{1}, w.seqs(), "anchored once")
		assert.Equal(t, hex.EncodeToString(first.Hash), w.written[0].Hash)

		w.mu.Lock()
		w.down = true
		w.mu.Unlock()
		appendEvent()
		tick()
		assert.Equal(t, []int64{1}, w.seqs())
		w.mu.Lock()
		w.down = false
		w.mu.Unlock()
		tick()
		assert.Equal(t, []int64{1, 2}, w.seqs(), "the failed write is retried")
		cancel()
		<-done
	})
}
