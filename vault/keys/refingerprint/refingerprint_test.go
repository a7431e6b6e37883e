package refingerprint_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/keystest"
	"github.com/obolpay/obol/vault/keys/refingerprint"
	"github.com/obolpay/obol/vault/store"
)

// TestRun: after the fingerprint secret rotates, the job rewrites every
// fingerprint made under the previous version to the one the latest
// version gives (per merchant), and a second run has nothing to do.
func TestRun(t *testing.T) {
	ctx := context.Background()
	kms, st := keystest.Open(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	env := envelope.New(kms, st, envelope.Config{})
	numbers := map[string]string{"tok_a": "4242424242424242", "tok_b": "5555555555554444", "tok_c": "378282246310005"}
	for _, m := range []string{"mer_1", "mer_2"} {
		require.NoError(t, st.CreateMerchant(ctx, store.Merchant{ID: m, Name: m, CreatedAt: now}, nil))
	}
	for tok, n := range numbers {
		merchant := "mer_1"
		if tok == "tok_c" {
			merchant = "mer_2"
		}
		fp, err := env.FingerprintAt(ctx, 1, merchant, []byte(n))
		require.NoError(t, err)
		keystest.StoreCard(t, env, st, merchant, tok, n, fp, 1, now)
	}

	v, err := kms.RotateFingerprint(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, v)
	fresh := envelope.New(kms, st, envelope.Config{})
	res, err := refingerprint.Run(ctx, fresh, st, 2)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Version)
	assert.Equal(t, len(numbers), res.Rewritten)
	assert.Zero(t, res.Skipped)
	left, err := st.TokensWithFingerprintBelow(ctx, 2, "", 10)
	require.NoError(t, err)
	assert.Empty(t, left, "tokens still under the old version")
	for tok, n := range numbers {
		merchant := "mer_1"
		if tok == "tok_c" {
			merchant = "mer_2"
		}
		r, err := st.GetToken(ctx, merchant, tok)
		require.NoError(t, err)
		want, err := fresh.FingerprintAt(ctx, 2, merchant, []byte(n))
		require.NoError(t, err)
		assert.Equal(t, want, r.Fingerprint, tok)
		assert.Equal(t, 2, r.FingerprintVersion, tok)
	}

	again, err := refingerprint.Run(ctx, fresh, st, 2)
	require.NoError(t, err)
	assert.Zero(t, again.Rewritten, "nothing left to do")
}
