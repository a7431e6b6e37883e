package envelope

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeKM is a key manager for unit tests of edge cases; integration tests
// use real Vault transit.
type fakeKM struct {
	generated, unwrapped atomic.Int64
	fpVersion            atomic.Int64
	fail                 atomic.Bool
	mu                   sync.Mutex
	keys                 map[string][]byte
}

func newFakeKM() *fakeKM { return &fakeKM{keys: map[string][]byte{}} }

func (f *fakeKM) GenerateDataKey(context.Context) (DataKey, error) {
	if f.fail.Load() {
		return DataKey{}, errors.New("sealed")
	}
	n := f.generated.Add(1)
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	w := "fake:" + string(rune('a'+n))
	f.mu.Lock()
	f.keys[w] = append([]byte(nil), k...)
	f.mu.Unlock()
	return DataKey{Plaintext: k, Wrapped: w, KEKVersion: 1}, nil
}

func (f *fakeKM) UnwrapDataKey(_ context.Context, w string) ([]byte, error) {
	if f.fail.Load() {
		return nil, errors.New("sealed")
	}
	f.unwrapped.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.keys[w]...), nil
}

func (f *fakeKM) FingerprintSecret(_ context.Context, version int) ([]byte, int, error) {
	if f.fail.Load() {
		return nil, 0, errors.New("sealed")
	}
	latest := int(f.fpVersion.Load())
	if latest == 0 {
		latest = 1
	}
	if version == 0 {
		version = latest
	}
	if version > latest {
		return nil, 0, errors.New("no such version")
	}
	return bytes.Repeat([]byte{byte(version)}, 32), version, nil
}

type memDEKs struct {
	mu sync.Mutex
	m  map[string]DEKRecord
}

func (m *memDEKs) InsertDEK(_ context.Context, d DEKRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[d.ID] = d
	return nil
}

func (m *memDEKs) GetDEK(_ context.Context, id string) (DEKRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.m[id]
	if !ok {
		return d, errors.New("not found")
	}
	return d, nil
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newTest(t *testing.T, cfg Config) (*Envelope, *fakeKM, *testClock) {
	t.Helper()
	km := newFakeKM()
	clk := &testClock{now: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	return New(km, &memDEKs{m: map[string]DEKRecord{}}, cfg), km, clk
}

var aad = AAD{Purpose: "card", Merchant: "mer_a", Token: "tok_1"}

func TestSealOpenRoundTrip(t *testing.T) {
	e, km, _ := newTest(t, Config{})
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		id, ct, err := e.Seal(ctx, aad, []byte("secret"))
		require.NoError(t, err)
		pt, err := e.Open(ctx, id, aad, ct)
		require.NoError(t, err)
		require.Equal(t, "secret", string(pt))
	}
	require.EqualValues(t, 1, km.generated.Load(), "key-manager calls for 100 seals: want 1 (one round trip per DEK)")
}

func TestAADBinding(t *testing.T) {
	e, _, _ := newTest(t, Config{})
	ctx := context.Background()
	id, ct, err := e.Seal(ctx, aad, []byte("secret"))
	require.NoError(t, err)
	tests := []struct {
		name string
		aad  AAD
		dek  string
		ct   []byte
	}{
		{"other token", AAD{Purpose: "card", Merchant: "mer_a", Token: "tok_2"}, id, ct},
		{"other merchant", AAD{Purpose: "card", Merchant: "mer_b", Token: "tok_1"}, id, ct},
		{"other purpose", AAD{Purpose: "cvc", Merchant: "mer_a", Token: "tok_1"}, id, ct},
		{"flipped bit", aad, id, func() []byte { c := bytes.Clone(ct); c[len(c)-1] ^= 1; return c }()},
		{"truncated", aad, id, ct[:10]},
		{"unknown version", aad, id, append([]byte{9}, ct[1:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Open(ctx, tt.dek, tt.aad, tt.ct)
			require.ErrorIs(t, err, ErrOpen)
		})
	}
}

func TestDEKRotatesByUsesAndAge(t *testing.T) {
	e, km, clk := newTest(t, Config{MaxUses: 3, MaxAge: time.Minute})
	ctx := context.Background()
	ids := map[string]bool{}
	for i := 0; i < 7; i++ {
		id, _, err := e.Seal(ctx, aad, []byte("x"))
		require.NoError(t, err)
		ids[id] = true
	}
	require.Len(t, ids, 3, "DEKs for 7 seals at 3 uses per DEK")
	require.EqualValues(t, 3, km.generated.Load(), "DEKs generated for 7 seals at 3 uses per DEK")
	clk.Add(2 * time.Minute)
	id, _, _ := e.Seal(ctx, aad, []byte("x"))
	require.False(t, ids[id], "DEK older than MaxAge was reused")
}

func TestOpenUnwrapsOnceAfterRestart(t *testing.T) {
	km := newFakeKM()
	deks := &memDEKs{m: map[string]DEKRecord{}}
	e1 := New(km, deks, Config{})
	ctx := context.Background()
	id, ct, _ := e1.Seal(ctx, aad, []byte("secret"))
	e2 := New(km, deks, Config{}) // a new process: empty cache
	for i := 0; i < 10; i++ {
		pt, err := e2.Open(ctx, id, aad, ct)
		require.NoError(t, err)
		require.Equal(t, "secret", string(pt))
	}
	require.EqualValues(t, 1, km.unwrapped.Load(), "unwraps")
}

func TestPurgeFailsClosed(t *testing.T) {
	e, km, _ := newTest(t, Config{})
	ctx := context.Background()
	id, ct, _ := e.Seal(ctx, aad, []byte("secret"))
	_, _, err := e.Fingerprint(ctx, "mer_a", []byte("4242"))
	require.NoError(t, err)
	km.fail.Store(true)
	e.Purge()
	require.Zero(t, e.CachedDEKs(), "DEKs still cached after Purge")
	_, err = e.Open(ctx, id, aad, ct)
	require.ErrorIs(t, err, ErrKeyManager, "Open after purge with key manager down")
	_, _, err = e.Seal(ctx, aad, []byte("x"))
	require.ErrorIs(t, err, ErrKeyManager, "Seal after purge")
	_, _, err = e.Fingerprint(ctx, "mer_a", []byte("4242"))
	require.ErrorIs(t, err, ErrKeyManager, "Fingerprint after purge")
	km.fail.Store(false)
	pt, err := e.Open(ctx, id, aad, ct)
	require.NoError(t, err, "Open after recovery")
	require.Equal(t, "secret", string(pt), "Open after recovery")
}

func TestFingerprintPerMerchant(t *testing.T) {
	e, _, _ := newTest(t, Config{})
	ctx := context.Background()
	a1, _, _ := e.Fingerprint(ctx, "mer_a", []byte("4242424242424242"))
	a2, _, _ := e.Fingerprint(ctx, "mer_a", []byte("4242424242424242"))
	b, _, _ := e.Fingerprint(ctx, "mer_b", []byte("4242424242424242"))
	other, _, _ := e.Fingerprint(ctx, "mer_a", []byte("5555555555554444"))
	assert.Equal(t, a1, a2, "fingerprints of one card for one merchant")
	assert.NotEqual(t, a1, b, "fingerprints of one card across merchants")
	assert.NotEqual(t, a1, other, "fingerprints of two cards")
	m1, _ := e.RequestMACs(ctx, "mer_a", []byte("ab"), []byte("c"))
	m2, _ := e.RequestMACs(ctx, "mer_a", []byte("a"), []byte("bc"))
	assert.NotEqual(t, m1[0], m2[0], "RequestMACs is ambiguous across part boundaries")
}

// TestFingerprintRotation: after the secret rotates, new fingerprints use
// the new version, the old one can still be computed for lookups, and
// request MACs are offered under both.
func TestFingerprintRotation(t *testing.T) {
	e, km, _ := newTest(t, Config{})
	ctx := context.Background()
	pan := []byte("4242424242424242")
	v1fp, v, err := e.Fingerprint(ctx, "mer_a", pan)
	require.NoError(t, err)
	require.EqualValues(t, 1, v, "fingerprint version")
	macs1, _ := e.RequestMACs(ctx, "mer_a", []byte("req"))
	km.fpVersion.Store(2)
	e.SetFingerprintVersion(2)
	v2fp, v, _ := e.Fingerprint(ctx, "mer_a", pan)
	require.EqualValues(t, 2, v, "fingerprint version after rotation")
	require.NotEqual(t, v1fp, v2fp, "fingerprint after rotation")
	old, _ := e.FingerprintAt(ctx, 1, "mer_a", pan)
	require.Equal(t, v1fp, old, "previous version's fingerprint changed")
	macs2, _ := e.RequestMACs(ctx, "mer_a", []byte("req"))
	require.Len(t, macs2, 2, "request MACs must be under v2 first and v1 second")
	assert.Equal(t, macs1[0], macs2[1], "request MACs must be under v2 first and v1 second")
	assert.NotEqual(t, macs1[0], macs2[0], "request MACs must be under v2 first and v1 second")
}

func BenchmarkSeal(b *testing.B) {
	km := newFakeKM()
	e := New(km, &memDEKs{m: map[string]DEKRecord{}}, Config{})
	ctx := context.Background()
	pt := make([]byte, 40)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _, err := e.Seal(ctx, aad, pt)
			require.NoError(b, err)
		}
	})
}

// TestSealConcurrentWithPurge: purging while sealing must never produce a
// ciphertext under a wiped (zeroed) key: every ciphertext must still open.
func TestSealConcurrentWithPurge(t *testing.T) {
	km := newFakeKM()
	deks := &memDEKs{m: map[string]DEKRecord{}}
	e := New(km, deks, Config{MaxUses: 5})
	ctx := context.Background()
	type sealed struct {
		id string
		ct []byte
	}
	var mu sync.Mutex
	var out []sealed
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				id, ct, err := e.Seal(ctx, aad, []byte("secret"))
				if err != nil {
					continue
				}
				mu.Lock()
				out = append(out, sealed{id, ct})
				mu.Unlock()
			}
		}()
	}
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				e.Purge()
			}
		}
	}()
	wg.Wait()
	close(stop)
	fresh := New(km, deks, Config{})
	for _, s := range out {
		pt, err := fresh.Open(ctx, s.id, aad, s.ct)
		require.NoError(t, err, "ciphertext under %s does not open", s.id)
		require.Equal(t, "secret", string(pt), "ciphertext under %s", s.id)
	}
	require.NotEmpty(t, out, "no seals succeeded")
}

// TestRetireBelow: after a rotation is seen, the current DEK (wrapped under
// the old version) stops sealing, still opens, and a data key that was
// generated under the old version never becomes current.
func TestRetireBelow(t *testing.T) {
	e, km, _ := newTest(t, Config{})
	ctx := context.Background()
	id1, ct, _ := e.Seal(ctx, aad, []byte("old"))
	require.EqualValues(t, 1, e.CurrentKEKVersion(), "current KEK version")
	require.True(t, e.RetireBelow(2), "current DEK under v1 not retired by v2")
	// The fake key manager still answers version 1 (a data key in flight
	// during the rotation): it is used once and not kept.
	id2, _, _ := e.Seal(ctx, aad, []byte("x"))
	id3, _, _ := e.Seal(ctx, aad, []byte("y"))
	assert.NotEqual(t, id1, id2, "a DEK under a retired KEK version was reused")
	assert.NotEqual(t, id2, id3, "a DEK under a retired KEK version was reused")
	assert.EqualValues(t, 3, km.generated.Load(), "DEKs generated")
	pt, err := e.Open(ctx, id1, aad, ct)
	require.NoError(t, err, "retired DEK no longer opens")
	require.Equal(t, "old", string(pt), "retired DEK")
}
