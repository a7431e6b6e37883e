package vaultd_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/testenv"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/revealbox"
	"github.com/obolpay/obol/vault/store"
)

var expYear = time.Now().Year() + 3

// TestLifecycle: tokenize → read → detokenize as the gateway (CVC once) →
// delete → 404 everywhere, for every approved brand of proxy/simulator/TESTCARDS.md.
func TestLifecycle(t *testing.T) {
	s := newStack(t, stackOpts{})
	cards := []struct {
		name, number, cvc, brand, bin, last4 string
	}{
		{"visa", "4242 4242 4242 4242", "123", "visa", "424242", "4242"},
		{"mastercard", "5555-5555-5555-4444", "321", "mastercard", "555555", "4444"},
		{"mastercard 2-series", "2223003122003222", "456", "mastercard", "222300", "3222"},
		{"amex", "3782 822463 10005", "1234", "amex", "378282", "0005"},
		{"discover", "6011111111111117", "789", "discover", "601111", "1117"},
		{"jcb", "3566002020360505", "555", "jcb", "356600", "0505"},
		{"unionpay", "6200000000000005", "666", "unionpay", "620000", "0005"},
	}
	for _, c := range cards {
		t.Run(c.name, func(t *testing.T) {
			r := s.tokenize(s.a.SecretKey, cardIn(c.number, 12, expYear, c.cvc))
			require.EqualValuesf(t, 200, r.status, "tokenize: %d %s", r.status, r.raw)
			tok := r.str("token")
			require.Truef(t, strings.HasPrefix(tok, "tok_"), "token %q is not tok_ + 128 bits", tok)
			require.GreaterOrEqualf(t, len(tok), 4+22, "token %q is not tok_ + 128 bits", tok)
			require.EqualValuesf(t, c.brand, r.str("card", "brand"), "tokenize response: %s", r.raw)
			require.EqualValuesf(t, c.bin, r.str("card", "bin"), "tokenize response: %s", r.raw)
			require.EqualValuesf(t, c.last4, r.str("card", "last4"), "tokenize response: %s", r.raw)
			require.NotEmptyf(t, r.str("cvc_expires_at"), "tokenize response: %s", r.raw)
			require.Truef(t, strings.HasPrefix(r.str("card", "fingerprint"), "fp_"), "tokenize response: %s", r.raw)
			digits := strings.NewReplacer(" ", "", "-", "").Replace(c.number)
			require.Falsef(t, strings.Contains(string(r.raw), digits), "tokenize response contains the PAN")
			g := s.rest(http.MethodGet, "/v1/tokens/"+tok, s.a.SecretKey, nil)
			require.EqualValuesf(t, 200, g.status, "get: %d %s", g.status, g.raw)
			require.EqualValuesf(t, c.last4, g.str("card", "last4"), "get: %d %s", g.status, g.raw)
			require.NotEmptyf(t, g.str("cvc_expires_at"), "get: %d %s", g.status, g.raw)
			require.Falsef(t, strings.Contains(string(g.raw), digits), "get: %d %s", g.status, g.raw)
			got, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
			require.NoErrorf(t, err, "detokenize: %v", err)
			require.EqualValuesf(t, digits, string(got.Number.RevealDigits()), "detokenize returned the wrong card (%v, cvc included %v)", got, resp.CvcIncluded)
			require.EqualValuesf(t, c.cvc, string(got.CVC.RevealDigits()), "detokenize returned the wrong card (%v, cvc included %v)", got, resp.CvcIncluded)
			require.EqualValuesf(t, 12, got.ExpMonth, "detokenize returned the wrong card (%v, cvc included %v)", got, resp.CvcIncluded)
			require.EqualValuesf(t, expYear, got.ExpYear, "detokenize returned the wrong card (%v, cvc included %v)", got, resp.CvcIncluded)
			require.Truef(t, resp.CvcIncluded, "detokenize returned the wrong card (%v, cvc included %v)", got, resp.CvcIncluded)
			got.Wipe()
			again, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
			require.NoErrorf(t, err, "second detokenize: err=%v cvc_included=%v (the CVC is single use)", err, resp.GetCvcIncluded())
			require.Falsef(t, resp.CvcIncluded, "second detokenize: err=%v cvc_included=%v (the CVC is single use)", err, resp.GetCvcIncluded())
			require.Truef(t, again.CVC.IsZero(), "second detokenize: err=%v cvc_included=%v (the CVC is single use)", err, resp.GetCvcIncluded())
			require.EqualValuesf(t, digits, string(again.Number.RevealDigits()), "second detokenize: err=%v cvc_included=%v (the CVC is single use)", err, resp.GetCvcIncluded())
			g = s.rest(http.MethodGet, "/v1/tokens/"+tok, s.a.SecretKey, nil)
			require.Emptyf(t, g.str("cvc_expires_at"), "CVC still reported after use: %s", g.raw)
			d := s.rest(http.MethodDelete, "/v1/tokens/"+tok, s.a.SecretKey, nil)
			require.EqualValuesf(t, 200, d.status, "delete: %d %s", d.status, d.raw)
			require.EqualValuesf(t, true, d.body["deleted"], "delete: %d %s", d.status, d.raw)
			g = s.rest(http.MethodGet, "/v1/tokens/"+tok, s.a.SecretKey, nil)
			require.EqualValuesf(t, 404, g.status, "get after delete: %d %s", g.status, g.raw)
			require.EqualValuesf(t, "token_not_found", g.errCode(), "get after delete: %d %s", g.status, g.raw)
			_, _, err = s.detokenize(s.gw, s.a.MerchantID, tok, false)
			require.EqualValuesf(t, codes.NotFound, status.Code(err), "detokenize after delete: %v", err)
		})
	}
}

// TestTokenizeValidation: every bad input is a typed 400 naming the field,
// and nothing is stored.
func TestTokenizeValidation(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	tests := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"bad luhn", map[string]any{"card": cardIn("4111 1111 1111 1112", 12, expYear, "")}, 400, "number_failed_luhn", "card.number"},
		{"letters", map[string]any{"card": map[string]any{"number": "4242abcd42424242", "exp_month": 12, "exp_year": expYear}}, 400, "number_invalid_characters", "card.number"},
		{"non-ascii digits", map[string]any{"card": map[string]any{"number": "４２４２４２４２４２４２４２４２", "exp_month": 12, "exp_year": expYear}}, 400, "number_invalid_characters", "card.number"},
		{"too short", map[string]any{"card": map[string]any{"number": "42424242424", "exp_month": 12, "exp_year": expYear}}, 400, "number_invalid_length", "card.number"},
		{"too long", map[string]any{"card": map[string]any{"number": "42424242424242424242", "exp_month": 12, "exp_year": expYear}}, 400, "number_invalid_length", "card.number"},
		{"unknown brand", map[string]any{"card": map[string]any{"number": "9999999999999995", "exp_month": 12, "exp_year": expYear}}, 400, "brand_not_supported", "card.number"},
		{"month 13", map[string]any{"card": cardIn("4242424242424242", 13, expYear, "")}, 400, "exp_month_invalid", "card.exp_month"},
		{"expired", map[string]any{"card": cardIn("4242424242424242", 1, 2020, "")}, 400, "card_expired", "card.exp_year"},
		{"amex 3-digit cvc", map[string]any{"card": cardIn("378282246310005", 12, expYear, "123")}, 400, "cvc_invalid", "card.cvc"},
		{"holder name too long", map[string]any{"card": map[string]any{"number": "4242424242424242", "exp_month": 12, "exp_year": expYear, "holder_name": strings.Repeat("x", 101)}}, 400, "holder_name_invalid", "card.holder_name"},
		{"unknown field", map[string]any{"card": map[string]any{"number": "4242424242424242", "exp_month": 12, "exp_year": expYear, "pin": "1234"}}, 400, "unknown_field", "card.pin"},
		{"unknown top-level field", map[string]any{"card": cardIn("4242424242424242", 12, expYear, ""), "amount": 5}, 400, "unknown_field", "amount"},
		{"number not a string", map[string]any{"card": map[string]any{"number": 4242424242424242, "exp_month": 12, "exp_year": expYear}}, 400, "malformed_body", "card.number"},
		{"month not an integer", map[string]any{"card": map[string]any{"number": "4242424242424242", "exp_month": 1.5, "exp_year": expYear}}, 400, "malformed_body", "card.exp_month"},
		{"missing card", map[string]any{}, 400, "field_required", "card"},
		{"not json", "{\"card\": ", 400, "malformed_body", "body"},
		{"oversized body", `{"card":{"number":"4242424242424242","holder_name":"` + strings.Repeat("a", 17<<10) + `"}}`, 413, "body_too_large", "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := s.in.Store.CountTokens(ctx)
			r := s.rest(http.MethodPost, "/v1/tokens", s.a.SecretKey, tt.body)
			require.EqualValuesf(t, tt.status, r.status, "got %d %s; want %d code=%s field=%s", r.status, r.raw, tt.status, tt.code, tt.field)
			require.EqualValuesf(t, tt.code, r.errCode(), "got %d %s; want %d code=%s field=%s", r.status, r.raw, tt.status, tt.code, tt.field)
			require.EqualValuesf(t, tt.field, r.errField(), "got %d %s; want %d code=%s field=%s", r.status, r.raw, tt.status, tt.code, tt.field)
			for _, secret := range []string{"4242424242424242", "4111 1111 1111 1112", "378282246310005"} {
				require.Falsef(t, strings.Contains(string(r.raw), secret), "error response echoes the card number")
			}
			after, _ := s.in.Store.CountTokens(ctx)
			require.EqualValuesf(t, before, after, "a rejected request stored a token (%d → %d)", before, after)
		})
	}
	t.Run("grpc carries code and field", func(t *testing.T) {
		_, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4111111111111112", ExpMonth: 12, ExpYear: int32(expYear)}})
		e := apierr.From(err)
		require.EqualValuesf(t, codes.InvalidArgument, status.Code(err), "gRPC error = %v (code %s field %s)", err, e.Code, e.Field)
		require.EqualValuesf(t, "number_failed_luhn", e.Code, "gRPC error = %v (code %s field %s)", err, e.Code, e.Field)
		require.EqualValuesf(t, "card.number", e.Field, "gRPC error = %v (code %s field %s)", err, e.Code, e.Field)
	})
}

// TestAuth: API keys, publishable-key limits, CORS, and who may detokenize.
func TestAuth(t *testing.T) {
	s := newStack(t, stackOpts{})
	tok := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, "")).str("token")
	tests := []struct {
		name    string
		method  string
		path    string
		key     string
		body    any
		headers []string
		status  int
		code    string
	}{
		{"no key", "GET", "/v1/tokens/" + tok, "", nil, nil, 401, "unauthenticated"},
		{"unknown key", "GET", "/v1/tokens/" + tok, "sk_test_doesnotexist", nil, nil, 401, "unauthenticated"},
		{"malformed key", "GET", "/v1/tokens/" + tok, "hunter2", nil, nil, 401, "unauthenticated"},
		{"publishable may tokenize", "POST", "/v1/tokens", s.a.PublishableKey, map[string]any{"card": cardIn("5555555555554444", 12, expYear, "")}, nil, 200, ""},
		{"publishable may not read", "GET", "/v1/tokens/" + tok, s.a.PublishableKey, nil, nil, 403, "permission_denied"},
		{"publishable may not delete", "DELETE", "/v1/tokens/" + tok, s.a.PublishableKey, nil, nil, 403, "permission_denied"},
		{"publishable from allowed origin", "POST", "/v1/tokens", s.a.PublishableKey, map[string]any{"card": cardIn("5555555555554444", 12, expYear, "")}, []string{"Origin", "https://shop-a.example"}, 200, ""},
		{"publishable from other origin", "POST", "/v1/tokens", s.a.PublishableKey, map[string]any{"card": cardIn("5555555555554444", 12, expYear, "")}, []string{"Origin", "https://evil.example"}, 403, "origin_not_allowed"},
		{"merchant B reads A's token", "GET", "/v1/tokens/" + tok, s.b.SecretKey, nil, nil, 404, "token_not_found"},
		{"merchant B deletes A's token", "DELETE", "/v1/tokens/" + tok, s.b.SecretKey, nil, nil, 404, "token_not_found"},
		{"unknown token", "GET", "/v1/tokens/tok_doesnotexist000000000", s.a.SecretKey, nil, nil, 404, "token_not_found"},
		{"no detokenize over REST", "POST", "/v1/tokens/" + tok + "/detokenize", s.a.SecretKey, map[string]any{}, nil, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.rest(tt.method, tt.path, tt.key, tt.body, tt.headers...)
			require.EqualValuesf(t, tt.status, r.status, "got %d %s; want %d %s", r.status, r.raw, tt.status, tt.code)
			require.EqualValuesf(t, tt.code, r.errCode(), "got %d %s; want %d %s", r.status, r.raw, tt.status, tt.code)
		})
	}
	t.Run("other merchant's token answers exactly like an unknown one", func(t *testing.T) {
		other := s.rest("GET", "/v1/tokens/"+tok, s.b.SecretKey, nil)
		unknown := s.rest("GET", "/v1/tokens/tok_doesnotexist000000000", s.b.SecretKey, nil)
		require.EqualValuesf(t, string(unknown.raw), string(other.raw), "responses differ:\n%s\n%s", other.raw, unknown.raw)
		require.EqualValuesf(t, unknown.status, other.status, "responses differ:\n%s\n%s", other.raw, unknown.raw)
		g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil)
		require.EqualValuesf(t, 200, g.status, "B's delete attempt affected A's token: %d", g.status)
	})
	t.Run("CORS preflight", func(t *testing.T) {
		ok := s.rest(http.MethodOptions, "/v1/tokens", "", nil, "Origin", "https://shop-a.example", "Access-Control-Request-Method", "POST")
		require.EqualValuesf(t, 204, ok.status, "allowed preflight: %d %v", ok.status, ok.header)
		require.EqualValuesf(t, "https://shop-a.example", ok.header.Get("Access-Control-Allow-Origin"), "allowed preflight: %d %v", ok.status, ok.header)
		require.Truef(t, strings.Contains(ok.header.Get("Access-Control-Allow-Headers"), "Idempotency-Key"), "allowed preflight: %d %v", ok.status, ok.header)
		bad := s.rest(http.MethodOptions, "/v1/tokens", "", nil, "Origin", "https://evil.example")
		require.EqualValuesf(t, 403, bad.status, "disallowed preflight: %d %v", bad.status, bad.header)
		require.Emptyf(t, bad.header.Get("Access-Control-Allow-Origin"), "disallowed preflight: %d %v", bad.status, bad.header)
	})
	detok := []struct {
		name     string
		client   vaultv1.VaultServiceClient
		merchant string
		want     codes.Code
	}{
		{"gateway for the owning merchant", s.gw, s.a.MerchantID, codes.OK},
		{"gateway naming another merchant", s.gw, s.b.MerchantID, codes.NotFound},
		{"no client certificate", s.anon, s.a.MerchantID, codes.PermissionDenied},
		{"certificate of another service", s.rogue, s.a.MerchantID, codes.PermissionDenied},
	}
	for _, tt := range detok {
		t.Run("detokenize: "+tt.name, func(t *testing.T) {
			c, _, err := s.detokenize(tt.client, tt.merchant, tok, false)
			require.EqualValuesf(t, tt.want, status.Code(err), "code = %v (%v); want %v", status.Code(err), err, tt.want)
			c.Wipe()
		})
	}
	t.Run("merchant API key cannot detokenize over gRPC", func(t *testing.T) {
		_, err := s.anon.Detokenize(grpcCtx(s.a.SecretKey), &vaultv1.DetokenizeRequest{MerchantId: s.a.MerchantID, Token: tok, RecipientPublicKey: make([]byte, 32)})
		require.EqualValuesf(t, codes.PermissionDenied, status.Code(err), "code = %v", status.Code(err))
	})
	t.Run("detokenize: the box is bound to its request", func(t *testing.T) {
		rcpt, err := revealbox.NewRecipient()
		require.NoError(t, err)
		ask := func() (*vaultv1.DetokenizeRequest, *vaultv1.DetokenizeResponse) {
			req := &vaultv1.DetokenizeRequest{MerchantId: s.a.MerchantID, Token: tok, Purpose: "test", DestinationHost: "acquirer.test"}
			require.NoError(t, rcpt.Ask(req))
			resp, err := s.gw.Detokenize(context.Background(), req)
			require.NoError(t, err)
			require.True(t, resp.GetRequestBound())
			return req, resp
		}
		reqA, respA := ask()
		reqB, respB := ask()
		require.Equal(t, reqA.GetRecipientPublicKey(), reqB.GetRecipientPublicKey(), "one recipient key for both")
		for name, c := range map[string]struct {
			req  *vaultv1.DetokenizeRequest
			resp *vaultv1.DetokenizeResponse
			ok   bool
		}{
			"A's box for A": {reqA, respA, true}, "B's box for B": {reqB, respB, true},
			"A's box for B": {reqB, respA, false}, "B's box for A": {reqA, respB, false},
		} {
			plain, err := rcpt.OpenAnswer(c.req, c.resp)
			clear(plain)
			if c.ok {
				assert.NoError(t, err, name)
			} else {
				assert.ErrorIs(t, err, revealbox.ErrOpen, name)
			}
		}
	})
	t.Run("detokenize: without a nonce, bound to merchant and token (older gateways)", func(t *testing.T) {
		rcpt, err := revealbox.NewRecipient()
		require.NoError(t, err)
		resp, err := s.gw.Detokenize(context.Background(), &vaultv1.DetokenizeRequest{MerchantId: s.a.MerchantID, Token: tok, RecipientPublicKey: rcpt.PublicKey()})
		require.NoError(t, err)
		assert.False(t, resp.GetRequestBound())
		plain, err := rcpt.Open(resp.GetSealedCard(), revealbox.AAD(s.a.MerchantID, tok))
		require.NoError(t, err)
		clear(plain)
	})
	for name, nonce := range map[string][]byte{"15 bytes": make([]byte, 15), "17 bytes": make([]byte, 17), "1 byte": {1}} {
		t.Run("detokenize: a nonce of "+name, func(t *testing.T) {
			rcpt, err := revealbox.NewRecipient()
			require.NoError(t, err)
			_, err = s.gw.Detokenize(context.Background(), &vaultv1.DetokenizeRequest{MerchantId: s.a.MerchantID, Token: tok, RecipientPublicKey: rcpt.PublicKey(), RequestNonce: nonce})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			assert.Equal(t, "request_nonce_invalid", apierr.From(err).Code)
			assert.Equal(t, "request_nonce", apierr.From(err).Field)
		})
	}
}

// TestRequireRequestNonce: with RequireRequestNonce a reveal without a
// nonce (an older gateway) is refused with request_nonce_required naming
// the field, before anything happens: its CVC is still there for the next,
// request-bound reveal, which alone is audited.
func TestRequireRequestNonce(t *testing.T) {
	s := newStack(t, stackOpts{requireNonce: true})
	tok := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, "737")).str("token")
	rcpt, err := revealbox.NewRecipient()
	require.NoError(t, err)
	_, err = s.gw.Detokenize(context.Background(), &vaultv1.DetokenizeRequest{MerchantId: s.a.MerchantID, Token: tok, IncludeCvc: true,
		RecipientPublicKey: rcpt.PublicKey(), Purpose: "test", DestinationHost: "acquirer.test"})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	assert.Equal(t, "request_nonce_required", apierr.From(err).Code)
	assert.Equal(t, "request_nonce", apierr.From(err).Field)
	assert.NotContains(t, s.logs.String(), "card revealed")
	detokenizes := func() int {
		evs, err := s.in.Store.ListAudit(context.Background(), store.AuditFilter{Token: tok})
		require.NoError(t, err)
		n := 0
		for _, ev := range evs {
			if ev.Action == audit.ActionDetokenize {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 0, detokenizes(), "the refused reveal is not audited")

	c, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
	require.NoError(t, err)
	assert.True(t, resp.GetRequestBound())
	assert.True(t, resp.GetCvcIncluded(), "the refused reveal did not take the CVC")
	assert.Equal(t, "737", string(c.CVC.RevealDigits()))
	c.Number.Wipe()
	c.CVC.Wipe()
	assert.Equal(t, 1, strings.Count(s.logs.String(), `"card revealed"`), "one reveal, the bound one")
	assert.Equal(t, 1, detokenizes(), "one audited reveal, the bound one")
}

// TestIdempotency: retries return the first result; a different request
// with the same key conflicts; concurrent retries make one token.
func TestIdempotency(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	body := map[string]any{"card": cardIn("4000 0000 0000 0002", 12, expYear, "111")}
	first := s.rest("POST", "/v1/tokens", s.a.SecretKey, body, "Idempotency-Key", "order-1")
	second := s.rest("POST", "/v1/tokens", s.a.SecretKey, body, "Idempotency-Key", "order-1")
	require.EqualValuesf(t, 200, first.status, "retry: %s / %s", first.raw, second.raw)
	require.EqualValuesf(t, 200, second.status, "retry: %s / %s", first.raw, second.raw)
	require.EqualValuesf(t, second.str("token"), first.str("token"), "retry: %s / %s", first.raw, second.raw)
	n, _ := s.in.Store.CountTokens(ctx)
	require.EqualValuesf(t, 1, n, "%d tokens after a retried request; want 1", n)
	other := s.rest("POST", "/v1/tokens", s.a.SecretKey, map[string]any{"card": cardIn("4000 0000 0000 9995", 12, expYear, "")}, "Idempotency-Key", "order-1")
	require.EqualValuesf(t, 409, other.status, "same key, different body: %d %s", other.status, other.raw)
	require.EqualValuesf(t, "idempotency_key_reused", other.errCode(), "same key, different body: %d %s", other.status, other.raw)
	// The same key belongs to each merchant separately.
	b := s.rest("POST", "/v1/tokens", s.b.SecretKey, body, "Idempotency-Key", "order-1")
	require.EqualValuesf(t, 200, b.status, "merchant B with A's key: %d %s", b.status, b.raw)
	require.NotEqualValuesf(t, first.str("token"), b.str("token"), "merchant B with A's key: %d %s", b.status, b.raw)
	// A key that is not printable ASCII, too long, sent twice or shaped
	// like a card number is a typed 400 naming the header: never ignored
	// (grpc-gateway used to drop a non-ASCII value, so a retry made a
	// second token), and nothing is written.
	invalid := []struct{ name, key, other string }{
		{"non-ascii", "commande-\u00e9", ""},
		{"latin-1 byte", "order-\xff", ""},
		{"too long", strings.Repeat("k", 256), ""},
		{"looks like a card number", "4242.4242.4242.4242", ""},
		{"sent again under grpc-metadata", "order-9", "Grpc-Metadata-Idempotency-Key"},
	}
	for _, tt := range invalid {
		t.Run("invalid key over REST: "+tt.name, func(t *testing.T) {
			before, _ := s.in.Store.CountTokens(ctx)
			hdr := []string{"Idempotency-Key", tt.key}
			if tt.other != "" {
				hdr = append(hdr, tt.other, tt.key+"-b")
			}
			for range 2 { // a retry is refused the same way
				r := s.rest("POST", "/v1/tokens", s.a.SecretKey, body, hdr...)
				require.Equal(t, 400, r.status, string(r.raw))
				if tt.other != "" {
					assert.Equal(t, "header_invalid", r.errCode())
					assert.Equal(t, tt.other, r.errField())
				} else {
					assert.Equal(t, "idempotency_key_invalid", r.errCode())
					assert.Equal(t, "Idempotency-Key", r.errField())
				}
				assert.NotContains(t, string(r.raw), tt.key)
			}
			after, _ := s.in.Store.CountTokens(ctx)
			assert.Equal(t, before, after, "nothing written")
		})
	}
	for _, tt := range []struct{ name, key string }{{"too long", strings.Repeat("k", 256)}, {"looks like a card number", "4242424242424242"}, {"empty", ""}} {
		t.Run("invalid key over gRPC: "+tt.name, func(t *testing.T) {
			_, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey, "idempotency-key", tt.key), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4000000000000002", ExpMonth: 12, ExpYear: int32(expYear)}})
			e := apierr.From(err)
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			assert.Equal(t, "idempotency_key_invalid", e.Code)
			assert.Equal(t, "Idempotency-Key", e.Field)
		})
	}
	t.Run("grpc key sent twice", func(t *testing.T) {
		_, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey, "idempotency-key", "a-1", "idempotency-key", "a-2"), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4000000000000002", ExpMonth: 12, ExpYear: int32(expYear)}})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		assert.Equal(t, "idempotency_key_invalid", apierr.From(err).Code)
	})
	t.Run("a publishable key cannot replay or probe a key", func(t *testing.T) {
		// A publishable key may not send a key at all (see
		// TestPublishableKeyNoOracle); the secret key's record is not
		// reachable from it, with the right card or the wrong one.
		for _, c := range []map[string]any{body, {"card": cardIn("4000 0000 0000 9995", 12, expYear, "")}} {
			probe := s.rest("POST", "/v1/tokens", s.a.PublishableKey, c, "Idempotency-Key", "order-1")
			require.Equal(t, 400, probe.status, string(probe.raw))
			assert.Equal(t, "idempotency_key_not_supported", probe.errCode())
			assert.NotContains(t, string(probe.raw), first.str("token"))
		}
	})
	t.Run("keys are stored hashed", func(t *testing.T) {
		dump := string(s.pg.Dump(t, s.dbURL))
		for _, k := range []string{"order-1"} {
			assert.NotContains(t, dump, k)
		}
	})
	t.Run("concurrent retries", func(t *testing.T) {
		before, _ := s.in.Store.CountTokens(ctx)
		var wg sync.WaitGroup
		tokens := make([]string, 8)
		codes := make([]int, 8)
		for i := range tokens {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r := s.rest("POST", "/v1/tokens", s.a.SecretKey, map[string]any{"card": cardIn("6011111111111117", 12, expYear, "")}, "Idempotency-Key", "race-1")
				tokens[i], codes[i] = r.str("token"), r.status
			}(i)
		}
		wg.Wait()
		for i := range tokens {
			require.EqualValuesf(t, 200, codes[i], "request %d: %d %q (first %q)", i, codes[i], tokens[i], tokens[0])
			require.EqualValuesf(t, tokens[0], tokens[i], "request %d: %d %q (first %q)", i, codes[i], tokens[i], tokens[0])
		}
		after, _ := s.in.Store.CountTokens(ctx)
		require.EqualValuesf(t, before+1, after, "%d tokens created by 8 concurrent retries; want 1", after-before)
	})
	t.Run("delete replays", func(t *testing.T) {
		tok := first.str("token")
		d1 := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil, "Idempotency-Key", "del-1")
		d2 := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil, "Idempotency-Key", "del-1")
		d3 := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil)
		require.EqualValuesf(t, 200, d1.status, "delete: %d %s / %d %s / %d", d1.status, d1.raw, d2.status, d2.raw, d3.status)
		require.EqualValuesf(t, 200, d2.status, "delete: %d %s / %d %s / %d", d1.status, d1.raw, d2.status, d2.raw, d3.status)
		require.EqualValuesf(t, string(d2.raw), string(d1.raw), "delete: %d %s / %d %s / %d", d1.status, d1.raw, d2.status, d2.raw, d3.status)
		require.EqualValuesf(t, 404, d3.status, "delete: %d %s / %d %s / %d", d1.status, d1.raw, d2.status, d2.raw, d3.status)
	})
	t.Run("grpc metadata", func(t *testing.T) {
		req := &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "3566002020360505", ExpMonth: 12, ExpYear: int32(expYear)}}
		leaks.AddCard("3566002020360505", "")
		r1, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey, "idempotency-key", "grpc-1"), req)
		require.NoError(t, err)
		req = &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "3566002020360505", ExpMonth: 12, ExpYear: int32(expYear)}}
		r2, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey, "idempotency-key", "grpc-1"), req)
		require.NoErrorf(t, err, "gRPC retry: %v %s %s", err, r1.Token, r2.GetToken())
		require.EqualValuesf(t, r2.Token, r1.Token, "gRPC retry: %v %s %s", err, r1.Token, r2.GetToken())
	})
}

// TestDedupe: dedupe returns the merchant's existing token for the same card,
// never another merchant's.
func TestDedupe(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := func(cvc string) map[string]any { return cardIn("5555 5555 5555 4444", 11, expYear, cvc) }
	first := s.tokenize(s.a.SecretKey, c(""))
	plain := s.tokenize(s.a.SecretKey, c(""))
	require.NotEqualValuesf(t, plain.str("token"), first.str("token"), "without dedupe the same card must get a new token")
	require.EqualValuesf(t, plain.str("card", "fingerprint"), first.str("card", "fingerprint"), "same card, same merchant: fingerprints differ")
	d := s.rest("POST", "/v1/tokens", s.a.SecretKey, map[string]any{"card": c("999"), "dedupe": true})
	require.EqualValuesf(t, 200, d.status, "dedupe: %d %s (want the first token %s)", d.status, d.raw, first.str("token"))
	require.EqualValuesf(t, first.str("token"), d.str("token"), "dedupe: %d %s (want the first token %s)", d.status, d.raw, first.str("token"))
	require.EqualValuesf(t, true, d.body["deduplicated"], "dedupe: %d %s (want the first token %s)", d.status, d.raw, first.str("token"))
	require.NotEmptyf(t, d.str("cvc_expires_at"), "dedupe: %d %s (want the first token %s)", d.status, d.raw, first.str("token"))
	got, _, err := s.detokenize(s.gw, s.a.MerchantID, first.str("token"), true)
	require.NoErrorf(t, err, "the CVC given with a deduplicated request is held for the existing token: %v", err)
	require.EqualValuesf(t, "999", string(got.CVC.RevealDigits()), "the CVC given with a deduplicated request is held for the existing token: %v", err)
	t.Run("concurrent first sightings make one token", func(t *testing.T) {
		before, _ := s.in.Store.CountTokens(context.Background())
		var wg sync.WaitGroup
		toks := make([]string, 8)
		for i := range toks {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				toks[i] = s.rest("POST", "/v1/tokens", s.a.SecretKey, map[string]any{"card": cardIn("3782 822463 10005", 10, expYear, ""), "dedupe": true}).str("token")
			}(i)
		}
		wg.Wait()
		after, _ := s.in.Store.CountTokens(context.Background())
		for _, tk := range toks {
			require.NotEmptyf(t, tk, "tokens %v", toks)
			require.EqualValuesf(t, toks[0], tk, "tokens %v", toks)
		}
		require.EqualValuesf(t, before+1, after, "%d tokens created; want 1", after-before)
	})
	b := s.rest("POST", "/v1/tokens", s.b.SecretKey, map[string]any{"card": c(""), "dedupe": true})
	require.NotEqualValuesf(t, first.str("token"), b.str("token"), "dedupe crossed merchants: %s", b.raw)
	require.NotEqualValuesf(t, true, b.body["deduplicated"], "dedupe crossed merchants: %s", b.raw)
	require.NotEqualValuesf(t, first.str("card", "fingerprint"), b.str("card", "fingerprint"), "dedupe crossed merchants: %s", b.raw)
}

// TestCVCExpiry: the CVC is held with the configured TTL in Redis and is gone
// once it expires.
func TestCVCExpiry(t *testing.T) {
	s := newStack(t, stackOpts{cvcTTL: 2 * time.Hour})
	r := s.tokenize(s.a.SecretKey, cardIn("6200 0000 0000 0005", 12, expYear, "777"))
	tok := r.str("token")
	rdb := s.redis.Client(t)
	ctx := context.Background()
	ttl, err := rdb.PTTL(ctx, "obol:cvc:"+tok).Result()
	require.NoErrorf(t, err, "CVC TTL in Redis = %v, %v; want about 2h", ttl, err)
	require.Greaterf(t, ttl, 119*time.Minute, "CVC TTL in Redis = %v, %v; want about 2h", ttl, err)
	require.LessOrEqualf(t, ttl, 2*time.Hour, "CVC TTL in Redis = %v, %v; want about 2h", ttl, err)
	exp, _ := time.Parse(time.RFC3339, r.str("cvc_expires_at"))
	d := time.Until(exp)
	require.GreaterOrEqualf(t, d, 119*time.Minute, "cvc_expires_at is %v away", d)
	require.LessOrEqualf(t, d, 2*time.Hour+time.Second, "cvc_expires_at is %v away", d)
	// Let Redis expire it now, as two hours passing would.
	err = rdb.PExpire(ctx, "obol:cvc:"+tok, time.Millisecond).Err()
	require.NoError(t, err)
	require.NoError(t, testenv.WaitFor(5*time.Second, func() error {
		if g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil); g.str("cvc_expires_at") != "" {
			return errors.New("CVC still held")
		}
		return nil
	}))
	c, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
	require.NoErrorf(t, err, "detokenize after CVC expiry: %v included=%v", err, resp.GetCvcIncluded())
	require.Falsef(t, resp.CvcIncluded, "detokenize after CVC expiry: %v included=%v", err, resp.GetCvcIncluded())
	require.Truef(t, c.CVC.IsZero(), "detokenize after CVC expiry: %v included=%v", err, resp.GetCvcIncluded())
	require.EqualValuesf(t, "0005", c.Number.Last4(), "detokenize after CVC expiry: %v included=%v", err, resp.GetCvcIncluded())
	// Regression: tokenize said one second, a read the next: the CVC was
	// stored a little after the answer's clock reading, so Redis held it
	// past the cvc_expires_at the merchant got (by up to a second), and a
	// read rounded what was left. Now Redis expires it at cvc_expires_at.
	t.Run("cvc_expires_at is the same on tokenize and read", func(t *testing.T) {
		// Tokenize for a little over a second of wall time, so that the
		// tokenizations land at every fraction of a second (the old code
		// was right only for some of them).
		begin := time.Now()
		for i := 0; time.Since(begin) < 1100*time.Millisecond && i < 1000; i++ {
			r := s.tokenize(s.a.SecretKey, cardIn("4242 4242 4242 4242", 12, expYear, "123"))
			tok := r.str("token")
			exp, err := time.Parse(time.RFC3339, r.str("cvc_expires_at"))
			require.NoError(t, err)
			ttl, err := rdb.PTTL(ctx, "obol:cvc:"+tok).Result()
			require.NoError(t, err)
			// Redis starts the TTL when the SET arrives, a few ms after
			// vaultd's clock reading: allow for that, not for a second.
			if !assert.False(t, time.Now().Add(ttl).After(exp.Add(250*time.Millisecond)), "tokenization %d: Redis holds the CVC past cvc_expires_at %s", i, exp) {
				break
			}
			g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil)
			if !assert.Equal(t, r.str("cvc_expires_at"), g.str("cvc_expires_at"), "tokenization %d", i) {
				break
			}
		}
	})
	t.Run("delete erases a held CVC", func(t *testing.T) {
		tok := s.tokenize(s.a.SecretKey, cardIn("3566002020360505", 12, expYear, "888")).str("token")
		n, _ := rdb.Exists(ctx, "obol:cvc:"+tok).Result()
		require.EqualValuesf(t, 1, n, "CVC not held after tokenize")
		d := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil)
		require.EqualValuesf(t, 200, d.status, "delete: %d", d.status)
		n, _ = rdb.Exists(ctx, "obol:cvc:"+tok).Result()
		require.EqualValuesf(t, 0, n, "CVC still in Redis after delete")
	})
}

// TestRestartDurability: tokens survive a vaultd restart; the new process
// has no cached keys and unwraps the DEK through Vault.
func TestRestartDurability(t *testing.T) {
	s := newStack(t, stackOpts{})
	var toks []string
	for i, n := range []string{"4242424242424242", "5555555555554444", "378282246310005"} {
		r := s.tokenize(s.a.SecretKey, cardIn(n, 10, expYear, ""))
		require.EqualValuesf(t, 200, r.status, "tokenize %d: %s", i, r.raw)
		toks = append(toks, r.str("token"))
	}
	s.stop()
	s.start()
	require.EqualValuesf(t, 0, s.in.Envelope.CachedDEKs(), "a fresh process should start with no plaintext DEKs")
	for i, tok := range toks {
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		require.NoErrorf(t, err, "token %d after restart: %v", i, err)
		c.Wipe()
	}
	u := s.in.Envelope.Stats.DEKsUnwrapped.Load()
	require.EqualValuesf(t, 1, u, "unwrapped %d DEKs through Vault for 3 cards under one DEK; want 1", u)
}

// TestGRPCTokenizeScrubsRequest: once Tokenize has run (successfully or
// not), the request message holds no card data, since generated String()
// methods would print it.
func TestGRPCTokenizeScrubsRequest(t *testing.T) {
	s := newStack(t, stackOpts{})
	leaks.AddCard("4000000000000069", "424")
	newReq := func() *vaultv1.TokenizeRequest {
		return &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4000000000000069", ExpMonth: 12, ExpYear: int32(expYear), Cvc: "424", HolderName: "Ada Lovelace"}}
	}
	for _, tt := range []struct {
		name string
		ctx  context.Context
		ok   bool
	}{
		{"authenticated", grpcCtx(s.a.SecretKey), true},
		{"unauthenticated", context.Background(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq()
			md, _ := metadataFromOutgoing(tt.ctx)
			resp, err := s.in.Service.Tokenize(md, req)
			require.EqualValuesf(t, tt.ok, (err == nil), "err = %v", err)
			require.Falsef(t, tt.ok && !strings.HasPrefix(resp.GetToken(), "tok_"), "token %q", resp.GetToken())
			out := fmt.Sprint(req)
			require.Falsef(t, strings.Contains(out, "4000000000000069"), "request still holds card data after Tokenize: %s", out)
			require.Falsef(t, strings.Contains(out, "424"), "request still holds card data after Tokenize: %s", out)
			require.Falsef(t, strings.Contains(out, "Ada"), "request still holds card data after Tokenize: %s", out)
		})
	}
}

// TestAuthenticateMerchant: the gateway resolves a merchant's secret key
// through vaultd (so merchants keep one set of keys); only the gateway's
// mTLS identity may ask, and publishable keys are refused.
func TestAuthenticateMerchant(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	cases := []struct {
		name   string
		client vaultv1.VaultServiceClient
		authz  string
		code   codes.Code
		want   string
	}{
		{"gateway, merchant A", s.gw, "Bearer " + s.a.SecretKey, codes.OK, s.a.MerchantID},
		{"gateway, merchant B", s.gw, "Bearer " + s.b.SecretKey, codes.OK, s.b.MerchantID},
		{"gateway, unknown key", s.gw, "Bearer sk_test_doesnotexist", codes.Unauthenticated, ""},
		{"gateway, no key", s.gw, "", codes.Unauthenticated, ""},
		{"gateway, publishable key", s.gw, "Bearer " + s.a.PublishableKey, codes.PermissionDenied, ""},
		{"no client certificate", s.anon, "Bearer " + s.a.SecretKey, codes.PermissionDenied, ""},
		{"another service's certificate", s.rogue, "Bearer " + s.a.SecretKey, codes.PermissionDenied, ""},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.AuthenticateMerchant(ctx, &vaultv1.AuthenticateMerchantRequest{Authorization: tt.authz})
			require.EqualValuesf(t, tt.code, status.Code(err), "got %v %v, want %v %q", resp, err, tt.code, tt.want)
			require.EqualValuesf(t, tt.want, resp.GetMerchantId(), "got %v %v, want %v %q", resp, err, tt.code, tt.want)
			require.Falsef(t, err != nil && strings.Contains(err.Error(), s.a.SecretKey), "the key is echoed in the error: %v", err)
		})
	}
}
