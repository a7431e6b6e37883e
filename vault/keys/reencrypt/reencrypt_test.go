package reencrypt_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/keystest"
	"github.com/obolpay/obol/vault/keys/localkms"
	"github.com/obolpay/obol/vault/keys/reencrypt"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/sqlite"
)

// The numbers are the simulator's test cards (proxy/simulator/TESTCARDS.md).
var numbers = []string{"4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "3566002020360505", "6200000000000005", "2223003122003222"}

type fixture struct {
	kms *localkms.Keyring
	st  *sqlite.Store
	t0  time.Time
}

// newFixture stores the test cards at t0 under DEKs of 3 uses each (several
// DEKs), on the embedded default's real keyring and SQLite store.
func newFixture(t *testing.T) (*fixture, []string) {
	t.Helper()
	ctx := context.Background()
	kms, st := keystest.Open(t)
	f := &fixture{kms: kms, st: st, t0: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	require.NoError(t, st.CreateMerchant(ctx, store.Merchant{ID: "mer_1", Name: "M", CreatedAt: f.t0}, nil))
	env := f.envelope(f.t0, 3)
	var toks []string
	for i, n := range numbers {
		tok := "tok_" + string(rune('a'+i))
		keystest.StoreCard(t, env, st, "mer_1", tok, n, "fp_"+tok, 1, f.t0)
		toks = append(toks, tok)
	}
	return f, toks
}

// envelope is a fresh envelope whose clock reads at.
func (f *fixture) envelope(at time.Time, maxUses int64) *envelope.Envelope {
	return envelope.New(f.kms, f.st, envelope.Config{MaxUses: maxUses, Now: func() time.Time { return at }})
}

func (f *fixture) deks(t *testing.T) []store.DEKStat {
	t.Helper()
	d, err := f.st.DEKStats(context.Background())
	require.NoError(t, err)
	return d
}

// opens checks that every token still opens to its card.
func (f *fixture) opens(t *testing.T, toks []string, at time.Time) {
	t.Helper()
	env := f.envelope(at, 0)
	for i, tok := range toks {
		r, err := f.st.GetToken(context.Background(), "mer_1", tok)
		require.NoError(t, err)
		plain, err := env.Open(context.Background(), r.DEKID, envelope.AAD{Purpose: "card", Merchant: "mer_1", Token: tok}, r.Ciphertext)
		require.NoError(t, err, "%s after re-encryption", tok)
		c, err := card.Decode(plain)
		clear(plain)
		require.NoError(t, err)
		assert.Equal(t, numbers[i][len(numbers[i])-4:], c.Number.Last4(), tok)
		c.Wipe()
	}
}

// TestRun: two days after the cards were stored, the job re-seals every
// card under a current DEK and destroys the DEKs that then protect
// nothing; every card still opens, and a second run has nothing to do.
func TestRun(t *testing.T) {
	f, toks := newFixture(t)
	ctx := context.Background()
	before := f.deks(t)
	require.GreaterOrEqual(t, len(before), 3, "several DEKs (3 uses each)")
	later := f.t0.Add(48 * time.Hour)
	var reports []reencrypt.Result
	res, err := reencrypt.Run(ctx, f.envelope(later, 0), f.st, reencrypt.Options{OlderThan: 24 * time.Hour, Destroy: true, Batch: 2, Now: func() time.Time { return later }},
		func(r reencrypt.Result) { reports = append(reports, r) })
	require.NoError(t, err)
	assert.Equal(t, len(toks), res.Reencrypted)
	assert.Zero(t, res.Skipped)
	assert.EqualValues(t, len(before), res.Destroyed, "every old DEK protects nothing any more")
	assert.Len(t, reports, (len(toks)+1)/2, "one report per batch")
	after := f.deks(t)
	require.Len(t, after, 1)
	assert.EqualValues(t, len(toks), after[0].Tokens)
	f.opens(t, toks, later)

	again, err := reencrypt.Run(ctx, f.envelope(later, 0), f.st, reencrypt.Options{OlderThan: 24 * time.Hour, Now: func() time.Time { return later }}, nil)
	require.NoError(t, err)
	assert.Zero(t, again.Reencrypted, "nothing left to do")
}

// TestRunKeepsYoungDEKs: DEKs younger than the destroy margin (the DEK max
// age plus the longest CVC lifetime) are kept even when no token uses them.
func TestRunKeepsYoungDEKs(t *testing.T) {
	f, toks := newFixture(t)
	soon := f.t0.Add(time.Minute)
	res, err := reencrypt.Run(context.Background(), f.envelope(soon, 0), f.st, reencrypt.Options{OlderThan: time.Nanosecond, Destroy: true, Now: func() time.Time { return soon }}, nil)
	require.NoError(t, err)
	assert.Equal(t, len(toks), res.Reencrypted)
	assert.Zero(t, res.Destroyed, "DEKs younger than the margin must survive")
	f.opens(t, toks, soon)
}

func TestRunRefusesNoWindow(t *testing.T) {
	f, _ := newFixture(t)
	_, err := reencrypt.Run(context.Background(), f.envelope(f.t0, 0), f.st, reencrypt.Options{}, nil)
	assert.ErrorContains(t, err, "OlderThan must be positive")
}

func TestDestroyMargin(t *testing.T) {
	tests := []struct {
		name   string
		maxAge time.Duration
		want   time.Duration
	}{
		{"default max age", 0, time.Hour + 24*time.Hour},
		{"configured max age", 2 * time.Hour, 2*time.Hour + 24*time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, reencrypt.DestroyMargin(tt.maxAge))
		})
	}
}
