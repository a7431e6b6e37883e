package rewrap_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/store/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeKS rewraps "vault:vN:x" to "vault:vLatest:x"; it can fail on a given
// call, for the resumability edge case (integration tests use real Vault).
type fakeKS struct {
	latest int
	calls  atomic.Int64
	failOn int64
}

func (f *fakeKS) LatestVersion(context.Context) (int, error) { return f.latest, nil }

func (f *fakeKS) RewrapBatch(_ context.Context, in []string) ([]string, error) {
	if f.calls.Add(1) == f.failOn {
		return nil, errors.New("vault went away")
	}
	out := make([]string, len(in))
	for i, w := range in {
		body := w[strings.LastIndexByte(w, ':')+1:]
		out[i] = fmt.Sprintf("vault:v%d:%s", f.latest, body)
	}
	return out, nil
}

func seed(t *testing.T, n int) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "v.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	for i := 0; i < n; i++ {
		require.NoError(t, st.InsertDEK(context.Background(), envelope.DEKRecord{ID: fmt.Sprintf("dek_%04d", i), Wrapped: fmt.Sprintf("vault:v1:k%d", i), KEKVersion: 1, CreatedAt: time.Now()}))
	}
	return st
}

func TestRewrapResumesAfterFailure(t *testing.T) {
	st := seed(t, 250)
	ks := &fakeKS{latest: 3, failOn: 2}
	ctx := context.Background()
	res, err := rewrap.Run(ctx, ks, st, 100, nil, nil)
	require.Error(t, err, "first run: want failure after one batch of 100")
	require.EqualValues(t, 100, res.Rewrapped, "first run: want failure after one batch of 100")
	res, err = rewrap.Run(ctx, ks, st, 100, nil, nil)
	require.NoError(t, err, "second run")
	require.EqualValues(t, 150, res.Rewrapped, "second run: want the remaining 150")
	stats, _ := st.KeyStats(ctx)
	require.Len(t, stats, 1, "stats")
	assert.EqualValues(t, 3, stats[0].KEKVersion, "stats")
	assert.EqualValues(t, 250, stats[0].DEKs, "stats")
	res, err = rewrap.Run(ctx, ks, st, 100, nil, nil)
	require.NoError(t, err, "third run")
	require.EqualValues(t, 0, res.Rewrapped, "third run: want nothing to do")
}

func TestRewrapSkipsConcurrentlyChanged(t *testing.T) {
	st := seed(t, 3)
	ks := &fakeKS{latest: 2}
	ctx := context.Background()
	// Another job rewrapped dek_0001 between our list and our write.
	racing := &racer{KeyService: ks, st: st}
	res, err := rewrap.Run(ctx, racing, st, 10, nil, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 2, res.Rewrapped, "rewrapped")
	assert.EqualValues(t, 1, res.Skipped, "skipped")
}

type racer struct {
	rewrap.KeyService
	st   *sqlite.Store
	done bool
}

func (r *racer) RewrapBatch(ctx context.Context, in []string) ([]string, error) {
	if !r.done {
		r.done = true
		if err := r.st.RewrapDEK(ctx, "dek_0001", "vault:v1:k1", "vault:v2:other", 2); err != nil {
			return nil, err
		}
	}
	return r.KeyService.RewrapBatch(ctx, in)
}
