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
			if r.status != 200 {
				t.Fatalf("tokenize: %d %s", r.status, r.raw)
			}
			tok := r.str("token")
			if !strings.HasPrefix(tok, "tok_") || len(tok) < 4+22 {
				t.Fatalf("token %q is not tok_ + 128 bits", tok)
			}
			if r.str("card", "brand") != c.brand || r.str("card", "bin") != c.bin || r.str("card", "last4") != c.last4 || r.str("cvc_expires_at") == "" || !strings.HasPrefix(r.str("card", "fingerprint"), "fp_") {
				t.Fatalf("tokenize response: %s", r.raw)
			}
			digits := strings.NewReplacer(" ", "", "-", "").Replace(c.number)
			if strings.Contains(string(r.raw), digits) {
				t.Fatal("tokenize response contains the PAN")
			}
			g := s.rest(http.MethodGet, "/v1/tokens/"+tok, s.a.SecretKey, nil)
			if g.status != 200 || g.str("card", "last4") != c.last4 || g.str("cvc_expires_at") == "" || strings.Contains(string(g.raw), digits) {
				t.Fatalf("get: %d %s", g.status, g.raw)
			}
			got, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
			if err != nil {
				t.Fatalf("detokenize: %v", err)
			}
			if string(got.Number.RevealDigits()) != digits || string(got.CVC.RevealDigits()) != c.cvc || got.ExpMonth != 12 || got.ExpYear != expYear || !resp.CvcIncluded {
				t.Fatalf("detokenize returned the wrong card (%v, cvc included %v)", got, resp.CvcIncluded)
			}
			got.Wipe()
			again, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
			if err != nil || resp.CvcIncluded || !again.CVC.IsZero() || string(again.Number.RevealDigits()) != digits {
				t.Fatalf("second detokenize: err=%v cvc_included=%v (the CVC is single use)", err, resp.GetCvcIncluded())
			}
			if g := s.rest(http.MethodGet, "/v1/tokens/"+tok, s.a.SecretKey, nil); g.str("cvc_expires_at") != "" {
				t.Fatalf("CVC still reported after use: %s", g.raw)
			}
			d := s.rest(http.MethodDelete, "/v1/tokens/"+tok, s.a.SecretKey, nil)
			if d.status != 200 || d.body["deleted"] != true {
				t.Fatalf("delete: %d %s", d.status, d.raw)
			}
			if g := s.rest(http.MethodGet, "/v1/tokens/"+tok, s.a.SecretKey, nil); g.status != 404 || g.errCode() != "token_not_found" {
				t.Fatalf("get after delete: %d %s", g.status, g.raw)
			}
			if _, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false); status.Code(err) != codes.NotFound {
				t.Fatalf("detokenize after delete: %v", err)
			}
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
			if r.status != tt.status || r.errCode() != tt.code || r.errField() != tt.field {
				t.Fatalf("got %d %s; want %d code=%s field=%s", r.status, r.raw, tt.status, tt.code, tt.field)
			}
			for _, secret := range []string{"4242424242424242", "4111 1111 1111 1112", "378282246310005"} {
				if strings.Contains(string(r.raw), secret) {
					t.Fatal("error response echoes the card number")
				}
			}
			if after, _ := s.in.Store.CountTokens(ctx); after != before {
				t.Fatalf("a rejected request stored a token (%d → %d)", before, after)
			}
		})
	}
	t.Run("grpc carries code and field", func(t *testing.T) {
		_, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey), &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "4111111111111112", ExpMonth: 12, ExpYear: int32(expYear)}})
		e := apierr.From(err)
		if status.Code(err) != codes.InvalidArgument || e.Code != "number_failed_luhn" || e.Field != "card.number" {
			t.Fatalf("gRPC error = %v (code %s field %s)", err, e.Code, e.Field)
		}
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
			if r.status != tt.status || r.errCode() != tt.code {
				t.Fatalf("got %d %s; want %d %s", r.status, r.raw, tt.status, tt.code)
			}
		})
	}
	t.Run("other merchant's token answers exactly like an unknown one", func(t *testing.T) {
		other := s.rest("GET", "/v1/tokens/"+tok, s.b.SecretKey, nil)
		unknown := s.rest("GET", "/v1/tokens/tok_doesnotexist000000000", s.b.SecretKey, nil)
		if string(other.raw) != string(unknown.raw) || other.status != unknown.status {
			t.Fatalf("responses differ:\n%s\n%s", other.raw, unknown.raw)
		}
		if g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil); g.status != 200 {
			t.Fatalf("B's delete attempt affected A's token: %d", g.status)
		}
	})
	t.Run("CORS preflight", func(t *testing.T) {
		ok := s.rest(http.MethodOptions, "/v1/tokens", "", nil, "Origin", "https://shop-a.example", "Access-Control-Request-Method", "POST")
		if ok.status != 204 || ok.header.Get("Access-Control-Allow-Origin") != "https://shop-a.example" || !strings.Contains(ok.header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
			t.Fatalf("allowed preflight: %d %v", ok.status, ok.header)
		}
		bad := s.rest(http.MethodOptions, "/v1/tokens", "", nil, "Origin", "https://evil.example")
		if bad.status != 403 || bad.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("disallowed preflight: %d %v", bad.status, bad.header)
		}
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
			if status.Code(err) != tt.want {
				t.Fatalf("code = %v (%v); want %v", status.Code(err), err, tt.want)
			}
			c.Wipe()
		})
	}
	t.Run("merchant API key cannot detokenize over gRPC", func(t *testing.T) {
		_, err := s.anon.Detokenize(grpcCtx(s.a.SecretKey), &vaultv1.DetokenizeRequest{MerchantId: s.a.MerchantID, Token: tok, RecipientPublicKey: make([]byte, 32)})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("code = %v", status.Code(err))
		}
	})
}

// TestIdempotency: retries return the first result; a different request
// with the same key conflicts; concurrent retries make one token.
func TestIdempotency(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	body := map[string]any{"card": cardIn("4000 0000 0000 0002", 12, expYear, "111")}
	first := s.rest("POST", "/v1/tokens", s.a.SecretKey, body, "Idempotency-Key", "order-1")
	second := s.rest("POST", "/v1/tokens", s.a.SecretKey, body, "Idempotency-Key", "order-1")
	if first.status != 200 || second.status != 200 || first.str("token") != second.str("token") {
		t.Fatalf("retry: %s / %s", first.raw, second.raw)
	}
	n, _ := s.in.Store.CountTokens(ctx)
	if n != 1 {
		t.Fatalf("%d tokens after a retried request; want 1", n)
	}
	other := s.rest("POST", "/v1/tokens", s.a.SecretKey, map[string]any{"card": cardIn("4000 0000 0000 9995", 12, expYear, "")}, "Idempotency-Key", "order-1")
	if other.status != 409 || other.errCode() != "idempotency_key_reused" {
		t.Fatalf("same key, different body: %d %s", other.status, other.raw)
	}
	// The same key belongs to each merchant separately.
	b := s.rest("POST", "/v1/tokens", s.b.SecretKey, body, "Idempotency-Key", "order-1")
	if b.status != 200 || b.str("token") == first.str("token") {
		t.Fatalf("merchant B with A's key: %d %s", b.status, b.raw)
	}
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
			if codes[i] != 200 || tokens[i] != tokens[0] {
				t.Fatalf("request %d: %d %q (first %q)", i, codes[i], tokens[i], tokens[0])
			}
		}
		if after, _ := s.in.Store.CountTokens(ctx); after != before+1 {
			t.Fatalf("%d tokens created by 8 concurrent retries; want 1", after-before)
		}
	})
	t.Run("delete replays", func(t *testing.T) {
		tok := first.str("token")
		d1 := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil, "Idempotency-Key", "del-1")
		d2 := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil, "Idempotency-Key", "del-1")
		d3 := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil)
		if d1.status != 200 || d2.status != 200 || string(d1.raw) != string(d2.raw) || d3.status != 404 {
			t.Fatalf("delete: %d %s / %d %s / %d", d1.status, d1.raw, d2.status, d2.raw, d3.status)
		}
	})
	t.Run("grpc metadata", func(t *testing.T) {
		req := &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "3566002020360505", ExpMonth: 12, ExpYear: int32(expYear)}}
		leaks.AddCard("3566002020360505", "")
		r1, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey, "idempotency-key", "grpc-1"), req)
		if err != nil {
			t.Fatal(err)
		}
		req = &vaultv1.TokenizeRequest{Card: &vaultv1.CardInput{Number: "3566002020360505", ExpMonth: 12, ExpYear: int32(expYear)}}
		r2, err := s.anon.Tokenize(grpcCtx(s.a.SecretKey, "idempotency-key", "grpc-1"), req)
		if err != nil || r1.Token != r2.Token {
			t.Fatalf("gRPC retry: %v %s %s", err, r1.Token, r2.GetToken())
		}
	})
}

// TestDedupe: dedupe returns the merchant's existing token for the same card,
// never another merchant's.
func TestDedupe(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := func(cvc string) map[string]any { return cardIn("5555 5555 5555 4444", 11, expYear, cvc) }
	first := s.tokenize(s.a.SecretKey, c(""))
	plain := s.tokenize(s.a.SecretKey, c(""))
	if first.str("token") == plain.str("token") {
		t.Fatal("without dedupe the same card must get a new token")
	}
	if first.str("card", "fingerprint") != plain.str("card", "fingerprint") {
		t.Fatal("same card, same merchant: fingerprints differ")
	}
	d := s.rest("POST", "/v1/tokens", s.a.SecretKey, map[string]any{"card": c("999"), "dedupe": true})
	if d.status != 200 || d.str("token") != first.str("token") || d.body["deduplicated"] != true || d.str("cvc_expires_at") == "" {
		t.Fatalf("dedupe: %d %s (want the first token %s)", d.status, d.raw, first.str("token"))
	}
	got, _, err := s.detokenize(s.gw, s.a.MerchantID, first.str("token"), true)
	if err != nil || string(got.CVC.RevealDigits()) != "999" {
		t.Fatalf("the CVC given with a deduplicated request is held for the existing token: %v", err)
	}
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
			if tk == "" || tk != toks[0] {
				t.Fatalf("tokens %v", toks)
			}
		}
		if after != before+1 {
			t.Fatalf("%d tokens created; want 1", after-before)
		}
	})
	b := s.rest("POST", "/v1/tokens", s.b.SecretKey, map[string]any{"card": c(""), "dedupe": true})
	if b.str("token") == first.str("token") || b.body["deduplicated"] == true || b.str("card", "fingerprint") == first.str("card", "fingerprint") {
		t.Fatalf("dedupe crossed merchants: %s", b.raw)
	}
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
	if err != nil || ttl <= 119*time.Minute || ttl > 2*time.Hour {
		t.Fatalf("CVC TTL in Redis = %v, %v; want about 2h", ttl, err)
	}
	exp, _ := time.Parse(time.RFC3339, r.str("cvc_expires_at"))
	if d := time.Until(exp); d < 119*time.Minute || d > 2*time.Hour+time.Second {
		t.Fatalf("cvc_expires_at is %v away", d)
	}
	// Let Redis expire it now, as two hours passing would.
	if err := rdb.PExpire(ctx, "obol:cvc:"+tok, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(5*time.Second, func() error {
		if g := s.rest("GET", "/v1/tokens/"+tok, s.a.SecretKey, nil); g.str("cvc_expires_at") != "" {
			return errors.New("CVC still held")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c, resp, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
	if err != nil || resp.CvcIncluded || !c.CVC.IsZero() || c.Number.Last4() != "0005" {
		t.Fatalf("detokenize after CVC expiry: %v included=%v", err, resp.GetCvcIncluded())
	}
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
		if n, _ := rdb.Exists(ctx, "obol:cvc:"+tok).Result(); n != 1 {
			t.Fatal("CVC not held after tokenize")
		}
		if d := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil); d.status != 200 {
			t.Fatalf("delete: %d", d.status)
		}
		if n, _ := rdb.Exists(ctx, "obol:cvc:"+tok).Result(); n != 0 {
			t.Fatal("CVC still in Redis after delete")
		}
	})
}

// TestRestartDurability: tokens survive a vaultd restart; the new process
// has no cached keys and unwraps the DEK through Vault.
func TestRestartDurability(t *testing.T) {
	s := newStack(t, stackOpts{})
	var toks []string
	for i, n := range []string{"4242424242424242", "5555555555554444", "378282246310005"} {
		r := s.tokenize(s.a.SecretKey, cardIn(n, 10, expYear, ""))
		if r.status != 200 {
			t.Fatalf("tokenize %d: %s", i, r.raw)
		}
		toks = append(toks, r.str("token"))
	}
	s.stop()
	s.start()
	if s.in.Envelope.CachedDEKs() != 0 {
		t.Fatal("a fresh process should start with no plaintext DEKs")
	}
	for i, tok := range toks {
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		if err != nil {
			t.Fatalf("token %d after restart: %v", i, err)
		}
		c.Wipe()
	}
	if u := s.in.Envelope.Stats.DEKsUnwrapped.Load(); u != 1 {
		t.Fatalf("unwrapped %d DEKs through Vault for 3 cards under one DEK; want 1", u)
	}
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
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && !strings.HasPrefix(resp.GetToken(), "tok_") {
				t.Fatalf("token %q", resp.GetToken())
			}
			if out := fmt.Sprint(req); strings.Contains(out, "4000000000000069") || strings.Contains(out, "424") || strings.Contains(out, "Ada") {
				t.Fatalf("request still holds card data after Tokenize: %s", out)
			}
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
			if status.Code(err) != tt.code || resp.GetMerchantId() != tt.want {
				t.Fatalf("got %v %v, want %v %q", resp, err, tt.code, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), s.a.SecretKey) {
				t.Fatalf("the key is echoed in the error: %v", err)
			}
		})
	}
}
