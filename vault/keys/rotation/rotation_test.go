package rotation_test

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
	"github.com/obolpay/obol/vault/keys/rotation"
	"github.com/obolpay/obol/vault/store/sqlite"
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
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i := 0; i < n; i++ {
		if err := st.InsertDEK(context.Background(), envelope.DEKRecord{ID: fmt.Sprintf("dek_%04d", i), Wrapped: fmt.Sprintf("vault:v1:k%d", i), KEKVersion: 1, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestRewrapResumesAfterFailure(t *testing.T) {
	st := seed(t, 250)
	ks := &fakeKS{latest: 3, failOn: 2}
	ctx := context.Background()
	res, err := rotation.Rewrap(ctx, ks, st, 100, nil, nil)
	if err == nil || res.Rewrapped != 100 {
		t.Fatalf("first run: %+v, %v; want failure after one batch of 100", res, err)
	}
	res, err = rotation.Rewrap(ctx, ks, st, 100, nil, nil)
	if err != nil || res.Rewrapped != 150 {
		t.Fatalf("second run: %+v, %v; want the remaining 150", res, err)
	}
	stats, _ := st.KeyStats(ctx)
	if len(stats) != 1 || stats[0].KEKVersion != 3 || stats[0].DEKs != 250 {
		t.Fatalf("stats %+v", stats)
	}
	res, err = rotation.Rewrap(ctx, ks, st, 100, nil, nil)
	if err != nil || res.Rewrapped != 0 {
		t.Fatalf("third run: %+v, %v; want nothing to do", res, err)
	}
}

func TestRewrapSkipsConcurrentlyChanged(t *testing.T) {
	st := seed(t, 3)
	ks := &fakeKS{latest: 2}
	ctx := context.Background()
	// Another job rewrapped dek_0001 between our list and our write.
	racing := &racer{KeyService: ks, st: st}
	res, err := rotation.Rewrap(ctx, racing, st, 10, nil, nil)
	if err != nil || res.Rewrapped != 2 || res.Skipped != 1 {
		t.Fatalf("%+v, %v; want 2 rewrapped and 1 skipped", res, err)
	}
}

type racer struct {
	rotation.KeyService
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
