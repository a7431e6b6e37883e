package vaultd_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/vaultd"
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
	if tx.status != 200 || ty.status != 200 || first.status != 200 {
		t.Fatal("tokenize failed")
	}
	fp1 := tx.str("card", "fingerprint")

	admin, err := transit.New(transit.Config{Address: s.vault.Addr, Token: s.vault.Token, FingerprintPath: s.cfg.Vault.FingerprintPath})
	if err != nil {
		t.Fatal(err)
	}
	v, err := admin.RotateFingerprint(ctx)
	if err != nil || v != 2 {
		t.Fatalf("rotate: v%d %v", v, err)
	}
	if err := testenv.WaitFor(10*time.Second, func() error {
		if got, _ := s.in.Envelope.FingerprintVersion(ctx); got != 2 {
			return fmt.Errorf("vaultd still at fingerprint v%d", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	d := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, map[string]any{"card": x(), "dedupe": true})
	fp2 := d.str("card", "fingerprint")
	if d.status != 200 || d.str("token") != tx.str("token") || d.body["deduplicated"] != true || fp2 == fp1 {
		t.Fatalf("dedupe across the rotation: %s (fp1 %s)", d.raw, fp1)
	}
	if r, _ := s.in.Store.GetToken(ctx, s.a.MerchantID, tx.str("token")); r.FingerprintVersion != 2 || r.Fingerprint != fp2 {
		t.Fatalf("the hit was not rewritten: %+v", r.FingerprintVersion)
	}
	again := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, retryBody, "Idempotency-Key", "before-rotation")
	if again.status != 200 || again.str("token") != first.str("token") {
		t.Fatalf("idempotent retry across the rotation: %d %s", again.status, again.raw)
	}
	if n := s.tokenize(s.a.SecretKey, cardIn("3566002020360505", 12, expYear, "")); n.status != 200 {
		t.Fatalf("new card: %s", n.raw)
	} else if r, _ := s.in.Store.GetToken(ctx, s.a.MerchantID, n.str("token")); r.FingerprintVersion != 2 {
		t.Fatalf("new card fingerprinted under v%d", r.FingerprintVersion)
	}

	res, err := vaultd.Refingerprint(ctx, s.in.Envelope, s.in.Store, 10)
	if err != nil || res.Rewritten != 2 || res.Version != 2 { // card Y and the retried card
		t.Fatalf("refingerprint: %+v %v", res, err)
	}
	if left, _ := s.in.Store.TokensWithFingerprintBelow(ctx, 2, "", 10); len(left) != 0 {
		t.Fatalf("%d tokens still under the old version", len(left))
	}
	dy := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, map[string]any{"card": y(), "dedupe": true})
	if dy.str("token") != ty.str("token") || dy.str("card", "fingerprint") == ty.str("card", "fingerprint") {
		t.Fatalf("dedupe after refingerprint: %s", dy.raw)
	}
	b := s.rest(http.MethodPost, "/v1/tokens", s.b.SecretKey, map[string]any{"card": x(), "dedupe": true})
	if b.str("token") == tx.str("token") || b.str("card", "fingerprint") == fp2 {
		t.Fatal("fingerprints match across merchants after rotation")
	}
}
