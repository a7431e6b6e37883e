package vaultd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/testenv"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
)

// TestPublishableKeyLearnsNothing: the publishable key is public (it is in
// the merchant's checkout page). With it and a list of cards, nobody may
// learn which cards the merchant holds, nor change a stored card: it only
// ever creates fresh tokens. Every path it can reach answers the same for
// a stored card, another merchant's token and an unknown one. (dedupe with
// a publishable key used to return the stored token and its real expiry,
// and hold the CVC sent with it for the stored token.)
func TestPublishableKeyLearnsNothing(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	const pan = "5200 8282 8282 8210"
	stored := s.tokenize(s.a.SecretKey, cardIn(pan, 11, expYear, ""))
	require.Equal(t, 200, stored.status, string(stored.raw))
	tok := stored.str("token")
	otherMerchant := s.tokenize(s.b.SecretKey, cardIn("4000 0566 5566 5556", 10, expYear, "")).str("token")
	before, _ := s.in.Store.CountTokens(ctx)

	t.Run("dedupe is refused, naming the field", func(t *testing.T) {
		for _, origin := range []string{"", "https://shop-a.example"} {
			hdr := []string{}
			if origin != "" {
				hdr = append(hdr, "Origin", origin)
			}
			r := s.rest("POST", "/v1/tokens", s.a.PublishableKey, map[string]any{"card": cardIn(pan, 12, expYear+1, "321"), "dedupe": true}, hdr...)
			require.Equal(t, http.StatusForbidden, r.status, string(r.raw))
			assert.Equal(t, "dedupe_requires_secret_key", r.errCode())
			assert.Equal(t, "dedupe", r.errField())
			assert.NotContains(t, string(r.raw), tok)
			assert.NotContains(t, string(r.raw), strconv.Itoa(expYear))
		}
		_, err := s.anon.Tokenize(grpcCtx(s.a.PublishableKey), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "5200828282828210", ExpMonth: 12, ExpYear: int32(expYear + 1), Cvc: "321"}, Dedupe: true})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		assert.Equal(t, "dedupe_requires_secret_key", apierr.From(err).Code)
		after, _ := s.in.Store.CountTokens(ctx)
		assert.Equal(t, before, after, "nothing written")
		_, d, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
		require.NoError(t, err)
		assert.False(t, d.CvcIncluded, "the stored token got no CVC")
	})
	t.Run("the same card makes a fresh token", func(t *testing.T) {
		r := s.tokenize(s.a.PublishableKey, cardIn(pan, 12, expYear+1, "321"))
		require.Equal(t, 200, r.status, string(r.raw))
		assert.NotEqual(t, tok, r.str("token"))
		assert.NotEqual(t, true, r.body["deduplicated"])
		assert.EqualValues(t, expYear+1, r.body["card"].(map[string]any)["exp_year"], "the answer carries the expiry sent, not the stored one")
		_, d, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
		require.NoError(t, err)
		assert.False(t, d.CvcIncluded, "the stored token still has no CVC")
	})
	t.Run("reads, deletes and CVC attaches answer alike for every token", func(t *testing.T) {
		paths := []struct {
			method, suffix string
			body           any
		}{
			{"GET", "", nil},
			{"DELETE", "", nil},
			{"POST", "/cvc", map[string]any{"cvc": "123"}},
			{"POST", "/cvc", map[string]any{"cvc": "123", "client_secret": "cvcs_guess"}},
			{"POST", "/cvc_client_secrets", map[string]any{}},
		}
		for _, p := range paths {
			var answers []string
			for _, tk := range []string{tok, otherMerchant, "tok_doesnotexist000000000"} {
				r := s.rest(p.method, "/v1/tokens/"+tk+p.suffix, s.a.PublishableKey, p.body)
				assert.Equal(t, http.StatusForbidden, r.status, "%s %s: %s", p.method, p.suffix, r.raw)
				assert.NotContains(t, string(r.raw), tk)
				answers = append(answers, string(r.raw))
			}
			assert.Equal(t, answers[0], answers[1], "%s %s", p.method, p.suffix)
			assert.Equal(t, answers[0], answers[2], "%s %s", p.method, p.suffix)
		}
		g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil)
		require.Equal(t, 200, g.status, "the stored token is untouched")
		assert.Empty(t, g.str("cvc_expires_at"))
	})
}

// TestAttachCVC: a CVC is held for an existing token only through the
// explicit, token-bound operation, with the secret key, or with the
// publishable key and a single-use client secret the secret key minted
// for that token.
func TestAttachCVC(t *testing.T) {
	s := newStack(t, stackOpts{})
	const pan = "4000 0566 5566 5556"
	tok := s.tokenize(s.a.SecretKey, cardIn(pan, 10, expYear, "")).str("token")
	tok2 := s.tokenize(s.a.SecretKey, cardIn("5200 8282 8282 8210", 10, expYear, "")).str("token")
	amex := s.tokenize(s.a.SecretKey, cardIn("3782 822463 10005", 10, expYear, "")).str("token")
	// heldCVC detokenizes with the CVC, which takes it (single use).
	heldCVC := func(tk string) string {
		t.Helper()
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tk, true)
		require.NoError(t, err)
		defer c.Wipe()
		return string(c.CVC.RevealDigits())
	}

	t.Run("secret key", func(t *testing.T) {
		leaks.AddCard("4000056655665556", "456")
		r := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.SecretKey, map[string]any{"cvc": "456"}, "Idempotency-Key", "cvc-1")
		require.Equal(t, 200, r.status, string(r.raw))
		assert.Equal(t, tok, r.str("token"))
		assert.NotEmpty(t, r.str("cvc_expires_at"))
		assert.Equal(t, "5556", r.str("card", "last4"))
		again := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.SecretKey, map[string]any{"cvc": "456"}, "Idempotency-Key", "cvc-1")
		assert.Equal(t, string(r.raw), string(again.raw), "a retry replays")
		other := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.SecretKey, map[string]any{"cvc": "457"}, "Idempotency-Key", "cvc-1")
		assert.Equal(t, "idempotency_key_reused", other.errCode())
		assert.Equal(t, "456", heldCVC(tok))
	})
	t.Run("over gRPC", func(t *testing.T) {
		leaks.AddCard("4000056655665556", "654")
		resp, err := s.anon.AttachCVC(grpcCtx(s.a.SecretKey), &vaultv1.AttachCVCRequest{Token: tok, Cvc: "654"})
		require.NoError(t, err)
		assert.NotNil(t, resp.CvcExpiresAt)
		assert.Equal(t, "654", heldCVC(tok))
	})
	bad := []struct {
		name, key, token string
		body             map[string]any
		status           int
		code, field      string
	}{
		{"no cvc", s.a.SecretKey, tok, map[string]any{}, 400, "field_required", "cvc"},
		{"cvc too short", s.a.SecretKey, tok, map[string]any{"cvc": "12"}, 400, "cvc_invalid", "cvc"},
		{"amex needs four digits", s.a.SecretKey, amex, map[string]any{"cvc": "123"}, 400, "cvc_invalid", "cvc"},
		{"letters", s.a.SecretKey, tok, map[string]any{"cvc": "12a"}, 400, "cvc_invalid", "cvc"},
		{"unknown field", s.a.SecretKey, tok, map[string]any{"cvc": "123", "pan": "x"}, 400, "unknown_field", "pan"},
		{"another merchant's token", s.b.SecretKey, tok, map[string]any{"cvc": "123"}, 404, "token_not_found", "token"},
		{"unknown token", s.a.SecretKey, "tok_doesnotexist000000000", map[string]any{"cvc": "123"}, 404, "token_not_found", "token"},
		{"publishable without a client secret", s.a.PublishableKey, tok, map[string]any{"cvc": "123"}, 403, "client_secret_required", "client_secret"},
		{"publishable with a made-up client secret", s.a.PublishableKey, tok, map[string]any{"cvc": "123", "client_secret": "cvcs_" + strings.Repeat("A", 43)}, 403, "client_secret_invalid", "client_secret"},
		{"no key", "", tok, map[string]any{"cvc": "123"}, 401, "unauthenticated", "authorization"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := s.rest("POST", "/v1/tokens/"+tt.token+"/cvc", tt.key, tt.body)
			require.Equal(t, tt.status, r.status, string(r.raw))
			assert.Equal(t, tt.code, r.errCode())
			assert.Equal(t, tt.field, r.errField())
		})
	}
	noCVC := func(msg string) {
		t.Helper()
		g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil)
		require.Equal(t, 200, g.status)
		assert.Empty(t, g.str("cvc_expires_at"), msg)
	}
	noCVC("refused attaches held no CVC")

	mint := func(key, tk string, hdr ...string) restResp {
		t.Helper()
		return s.rest("POST", "/v1/tokens/"+tk+"/cvc_client_secrets", key, map[string]any{}, hdr...)
	}
	t.Run("client secret", func(t *testing.T) {
		m := mint(s.a.SecretKey, tok)
		require.Equal(t, 200, m.status, string(m.raw))
		secret := m.str("client_secret")
		require.True(t, strings.HasPrefix(secret, "cvcs_"), secret)
		assert.Equal(t, tok, m.str("token"))
		assert.NotEmpty(t, m.str("expires_at"))
		for _, kv := range s.redis.Dump(t) {
			assert.NotContains(t, string(kv), secret, "only the secret's hash is stored")
		}
		// Held under its hash for the default 10 minutes.
		sum := sha256.Sum256([]byte("obol cvc client secret v1\x00" + secret))
		slot := "obol:cvc:cvcsecret:" + hex.EncodeToString(sum[:])
		rdb := s.redis.Client(t)
		ttl, err := rdb.PTTL(context.Background(), slot).Result()
		require.NoError(t, err)
		assert.True(t, ttl > 9*time.Minute && ttl <= 10*time.Minute, "client secret TTL %v", ttl)

		leaks.AddCard("4000056655665556", "789")
		use := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.PublishableKey, map[string]any{"cvc": "789", "client_secret": secret}, "Origin", "https://shop-a.example")
		require.Equal(t, 200, use.status, string(use.raw))
		assert.Equal(t, tok, use.str("token"))
		assert.NotEmpty(t, use.str("cvc_expires_at"))
		assert.Nil(t, use.body["card"], "the publishable key learns nothing about the stored card")
		assert.Equal(t, "789", heldCVC(tok))

		reuse := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.PublishableKey, map[string]any{"cvc": "790", "client_secret": secret})
		assert.Equal(t, 403, reuse.status)
		assert.Equal(t, "client_secret_invalid", reuse.errCode(), "single use")

		// A secret presented for another token fails, and is burnt.
		m2 := mint(s.a.SecretKey, tok)
		wrong := s.rest("POST", "/v1/tokens/"+tok2+"/cvc", s.a.PublishableKey, map[string]any{"cvc": "111", "client_secret": m2.str("client_secret")})
		assert.Equal(t, "client_secret_invalid", wrong.errCode())
		burnt := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.PublishableKey, map[string]any{"cvc": "111", "client_secret": m2.str("client_secret")})
		assert.Equal(t, "client_secret_invalid", burnt.errCode())
		// Another merchant's publishable key cannot use A's secret.
		m3 := mint(s.a.SecretKey, tok)
		cross := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.b.PublishableKey, map[string]any{"cvc": "111", "client_secret": m3.str("client_secret")})
		assert.Equal(t, "client_secret_invalid", cross.errCode())
		// An expired secret is refused (let Redis expire it now, as ten
		// minutes passing would).
		m4 := mint(s.a.SecretKey, tok)
		sum4 := sha256.Sum256([]byte("obol cvc client secret v1\x00" + m4.str("client_secret")))
		slot4 := "obol:cvc:cvcsecret:" + hex.EncodeToString(sum4[:])
		require.NoError(t, rdb.PExpire(context.Background(), slot4, time.Millisecond).Err())
		require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
			if n, _ := rdb.Exists(context.Background(), slot4).Result(); n != 0 {
				return errors.New("client secret still held")
			}
			return nil
		}))
		expired := s.rest("POST", "/v1/tokens/"+tok+"/cvc", s.a.PublishableKey, map[string]any{"cvc": "111", "client_secret": m4.str("client_secret")})
		assert.Equal(t, "client_secret_invalid", expired.errCode())
		noCVC("failed uses held no CVC")
	})
	mintBad := []struct {
		name, key, token string
		hdr              []string
		status           int
		code, field      string
	}{
		{"publishable key", s.a.PublishableKey, tok, nil, 403, "permission_denied", "authorization"},
		{"another merchant's token", s.b.SecretKey, tok, nil, 404, "token_not_found", "token"},
		{"with an idempotency key", s.a.SecretKey, tok, []string{"Idempotency-Key", "mint-1"}, 400, "idempotency_key_invalid", "Idempotency-Key"},
	}
	for _, tt := range mintBad {
		t.Run("mint: "+tt.name, func(t *testing.T) {
			r := mint(tt.key, tt.token, tt.hdr...)
			require.Equal(t, tt.status, r.status, string(r.raw))
			assert.Equal(t, tt.code, r.errCode())
			assert.Equal(t, tt.field, r.errField())
		})
	}
	t.Run("CORS preflight for the attach route", func(t *testing.T) {
		ok := s.rest(http.MethodOptions, "/v1/tokens/"+tok+"/cvc", "", nil, "Origin", "https://shop-a.example", "Access-Control-Request-Method", "POST")
		assert.Equal(t, 204, ok.status)
		assert.Equal(t, "https://shop-a.example", ok.header.Get("Access-Control-Allow-Origin"))
		mintPre := s.rest(http.MethodOptions, "/v1/tokens/"+tok+"/cvc_client_secrets", "", nil, "Origin", "https://shop-a.example", "Access-Control-Request-Method", "POST")
		assert.Empty(t, mintPre.header.Get("Access-Control-Allow-Origin"), "minting is server-to-server")
	})
}

// TestPublishableKeyNoOracle: the publishable key is public, so its
// tokenize answer must not let anyone test guesses of a stored card. It
// used to carry the merchant's real fingerprint (which also leaves the
// vault with payments and riskd): with BIN and last4 known, 10^4 tokenizes
// recover a PAN. And a replay under a known Idempotency-Key answered the
// first token for the right card and a conflict for a wrong one.
func TestPublishableKeyNoOracle(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	const pan = "4000 0566 5566 5556"
	stored := s.tokenize(s.a.SecretKey, cardIn(pan, 11, expYear, ""))
	require.Equal(t, 200, stored.status, string(stored.raw))
	fp := stored.str("card", "fingerprint")
	require.NotEmpty(t, fp, "the secret key still gets the fingerprint")

	t.Run("the answer carries no fingerprint", func(t *testing.T) {
		for _, origin := range []string{"", "https://shop-a.example"} {
			r := s.tokenize(s.a.PublishableKey, cardIn(pan, 12, expYear+1, "321"), "Origin", origin)
			require.Equal(t, 200, r.status, string(r.raw))
			assert.NotContains(t, string(r.raw), fp)
			var top []string
			for k := range r.body {
				top = append(top, k)
			}
			assert.ElementsMatch(t, []string{"token", "card", "cvc_expires_at", "created_at"}, top, string(r.raw))
			var fields []string
			for k := range r.body["card"].(map[string]any) {
				fields = append(fields, k)
			}
			assert.ElementsMatch(t, []string{"brand", "bin", "last4", "exp_month", "exp_year"}, fields,
				"only what the user typed: %s", r.raw)
			// The merchant's backend reads the fingerprint with its secret key.
			g := s.rest("GET", "/v1/tokens/"+r.str("token"), s.a.SecretKey, nil)
			require.Equal(t, 200, g.status, string(g.raw))
			assert.Equal(t, fp, g.str("card", "fingerprint"))
		}
		tok, err := s.anon.Tokenize(grpcCtx(s.a.PublishableKey), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4000056655665556", ExpMonth: 12, ExpYear: int32(expYear + 1)}})
		require.NoError(t, err)
		assert.Empty(t, tok.GetCard().GetFingerprint(), "gRPC answer too")
		assert.Equal(t, "5556", tok.GetCard().GetLast4())
	})
	t.Run("an Idempotency-Key is refused", func(t *testing.T) {
		before, _ := s.in.Store.CountTokens(ctx)
		for _, c := range []string{pan, "4000 0566 5566 5564"} {
			r := s.tokenize(s.a.PublishableKey, cardIn(c, 11, expYear, ""), "Idempotency-Key", "order-1001")
			require.Equal(t, http.StatusBadRequest, r.status, string(r.raw))
			assert.Equal(t, "idempotency_key_not_supported", r.errCode())
			assert.Equal(t, "Idempotency-Key", r.errField())
		}
		_, err := s.anon.Tokenize(grpcCtx(s.a.PublishableKey, "idempotency-key", "order-1001"), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4000056655665556", ExpMonth: 12, ExpYear: int32(expYear)}})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		assert.Equal(t, "idempotency_key_not_supported", apierr.From(err).Code)
		after, _ := s.in.Store.CountTokens(ctx)
		assert.Equal(t, before, after, "nothing written")
		// The secret key keeps its idempotency.
		a := s.tokenize(s.a.SecretKey, cardIn(pan, 11, expYear, ""), "Idempotency-Key", "order-1001")
		b := s.tokenize(s.a.SecretKey, cardIn(pan, 11, expYear, ""), "Idempotency-Key", "order-1001")
		require.Equal(t, 200, b.status, string(b.raw))
		assert.Equal(t, a.str("token"), b.str("token"))
	})
}
