package vaultd_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/keys/refingerprint"
	"github.com/obolpay/obol/vault/keys/transit"
)

// TestFingerprintRotation: after the fingerprint secret rotates, vaultd
// fingerprints new cards under the new version, still finds cards stored
// under the previous one (dedupe), rewrites what it finds, replays
// idempotent retries from before the rotation, and the refingerprint job
// rewrites the rest so lookups no longer need the old version.
func TestFingerprintRotation(t *testing.T) {
	s := newStack(t, stackOpts{noAutoJobs: true})
	ctx := context.Background()
	x := func() map[string]any { return cardIn("4242424242424242", 12, expYear, "") }
	y := func() map[string]any { return cardIn("5555555555554444", 12, expYear, "") }
	tx := s.tokenize(s.a.SecretKey, x())
	ty := s.tokenize(s.a.SecretKey, y())
	retryBody := map[string]any{"card": cardIn("6011111111111117", 12, expYear, "")}
	first := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, retryBody, "Idempotency-Key", "before-rotation")
	require.EqualValuesf(t, 200, tx.status, "tokenize failed")
	require.EqualValuesf(t, 200, ty.status, "tokenize failed")
	require.EqualValuesf(t, 200, first.status, "tokenize failed")
	fp1 := tx.str("card", "fingerprint")

	admin, err := transit.New(transit.Config{Address: s.vault.Addr, Token: s.vault.Token, FingerprintPath: s.cfg.Vault.FingerprintPath})
	require.NoError(t, err)
	v, err := admin.RotateFingerprint(ctx)
	require.NoErrorf(t, err, "rotate: v%d %v", v, err)
	require.EqualValuesf(t, 2, v, "rotate: v%d %v", v, err)
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		if got, _ := s.in.Envelope.FingerprintVersion(ctx); got != 2 {
			return fmt.Errorf("vaultd still at fingerprint v%d", got)
		}
		return nil
	}))

	d := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, map[string]any{"card": x(), "dedupe": true})
	fp2 := d.str("card", "fingerprint")
	require.EqualValuesf(t, 200, d.status, "dedupe across the rotation: %s (fp1 %s)", d.raw, fp1)
	require.EqualValuesf(t, tx.str("token"), d.str("token"), "dedupe across the rotation: %s (fp1 %s)", d.raw, fp1)
	require.EqualValuesf(t, true, d.body["deduplicated"], "dedupe across the rotation: %s (fp1 %s)", d.raw, fp1)
	require.NotEqualValuesf(t, fp1, fp2, "dedupe across the rotation: %s (fp1 %s)", d.raw, fp1)
	r, _ := s.in.Store.GetToken(ctx, s.a.MerchantID, tx.str("token"))
	require.EqualValuesf(t, 2, r.FingerprintVersion, "the hit was not rewritten: %+v", r.FingerprintVersion)
	require.EqualValuesf(t, fp2, r.Fingerprint, "the hit was not rewritten: %+v", r.FingerprintVersion)
	again := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, retryBody, "Idempotency-Key", "before-rotation")
	require.EqualValuesf(t, 200, again.status, "idempotent retry across the rotation: %d %s", again.status, again.raw)
	require.EqualValuesf(t, first.str("token"), again.str("token"), "idempotent retry across the rotation: %d %s", again.status, again.raw)
	n := s.tokenize(s.a.SecretKey, cardIn("3566002020360505", 12, expYear, ""))
	require.Equalf(t, 200, n.status, "new card: %s", n.raw)
	nr, err := s.in.Store.GetToken(ctx, s.a.MerchantID, n.str("token"))
	require.NoError(t, err)
	assert.Equal(t, 2, nr.FingerprintVersion, "the new card's fingerprint version")

	res, err := refingerprint.Run(ctx, s.in.Envelope, s.in.Store, 10)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Rewritten, "card Y and the retried card")
	assert.Equal(t, 2, res.Version)
	left, _ := s.in.Store.TokensWithFingerprintBelow(ctx, 2, "", 10)
	require.Emptyf(t, left, "%d tokens still under the old version", len(left))
	dy := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, map[string]any{"card": y(), "dedupe": true})
	require.EqualValuesf(t, ty.str("token"), dy.str("token"), "dedupe after refingerprint: %s", dy.raw)
	require.NotEqualValuesf(t, ty.str("card", "fingerprint"), dy.str("card", "fingerprint"), "dedupe after refingerprint: %s", dy.raw)
	b := s.rest(http.MethodPost, "/v1/tokens", s.b.SecretKey, map[string]any{"card": x(), "dedupe": true})
	require.NotEqualValuesf(t, tx.str("token"), b.str("token"), "fingerprints match across merchants after rotation")
	require.NotEqualValuesf(t, fp2, b.str("card", "fingerprint"), "fingerprints match across merchants after rotation")
}
