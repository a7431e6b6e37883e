package connector

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/card"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testCard(t *testing.T, pan string) card.Card {
	t.Helper()
	c, err := card.Parse(card.Input{Number: pan, ExpMonth: 12, ExpYear: 2031, CVC: "123"}, time.Now())
	require.NoError(t, err)
	return c
}

type seen struct {
	method, path, idem string
	form               url.Values
	status             int
}

// recorder sits between the connector and stripe-mock and keeps what
// went over the wire.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (r *recorder) last(path string) seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reqs) - 1; i >= 0; i-- {
		if r.reqs[i].path == path {
			return r.reqs[i]
		}
	}
	return seen{}
}

// TestStripeAgainstStripeMock sends every operation to the real stripe-mock,
// which validates each request against Stripe's OpenAPI spec: all are
// accepted, the Idempotency-Key is forwarded, and a malformed request is
// refused (so the acceptance means something).
func TestStripeAgainstStripeMock(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs stripe-mock")
	}
	target, _ := url.Parse(testenv.StripeMock(t))
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		s := seen{method: req.Method, path: req.URL.Path, idem: req.Header.Get("Idempotency-Key"), status: resp.StatusCode}
		if b, ok := req.Context().Value(bodyKey{}).([]byte); ok {
			s.form, _ = url.ParseQuery(string(b))
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, s)
		rec.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bodyKey{}, b)))
	}))
	defer srv.Close()
	s, err := NewStripe(StripeConfig{BaseURL: srv.URL, SecretKey: "sk_test_obol"})
	require.NoError(t, err)
	ctx := context.Background()

	for _, capture := range []bool{false, true} {
		c := testCard(t, "4242424242424242")
		res, err := s.Authorize(ctx, AuthRequest{PaymentID: "pay_stripe1", Amount: 2500, Currency: "USD", Capture: capture, Card: c, IdempotencyKey: "auth:pay_stripe1"})
		c.Wipe()
		require.NoError(t, err, "authorize (capture %v)", capture)
		// stripe-mock's fixture intent is requires_payment_method, which a
		// real Stripe returns for a declined confirmation.
		require.NotEmpty(t, res.Reference, "authorize (capture %v): %+v", capture, res)
		require.False(t, res.Approved, "authorize (capture %v): %+v", capture, res)
		require.NotEmpty(t, res.DeclineCode, "authorize (capture %v): %+v", capture, res)
		pm, pi := rec.last("/v1/payment_methods"), rec.last("/v1/payment_intents")
		want := map[string]string{"capture_method": "manual", "confirm": "true", "currency": "usd", "amount": "2500", "metadata[obol_payment_id]": "pay_stripe1"}
		if capture {
			want["capture_method"] = "automatic"
		}
		for k, v := range want {
			assert.Equal(t, v, pi.form.Get(k), "payment intent %s", k)
		}
		require.Equal(t, 200, pm.status, "payment method request")
		require.Equal(t, 200, pi.status, "payment intent request")
		require.Equal(t, "auth:pay_stripe1:pm", pm.idem)
		require.Equal(t, "auth:pay_stripe1", pi.idem)
		require.Equal(t, "4242424242424242", pm.form.Get("card[number]"))
		require.Equal(t, "123", pm.form.Get("card[cvc]"))
	}
	ops := []struct {
		name, path, idem string
		run              func() error
	}{
		{"capture", "/v1/payment_intents/pi_1/capture", "capture:pay_stripe1", func() error { return s.Capture(ctx, "pi_1", 2000, "capture:pay_stripe1") }},
		{"cancel", "/v1/payment_intents/pi_1/cancel", "cancel:pay_stripe1", func() error { return s.Cancel(ctx, "pi_1", "cancel:pay_stripe1") }},
		{"refund", "/v1/refunds", "refund:pay_stripe1:re_1", func() error { return s.Refund(ctx, "pi_1", 500, "refund:pay_stripe1:re_1") }},
		{"reverse", "/v1/payment_intents/search", "", func() error { return s.Reverse(ctx, "pay_stripe1") }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			require.NoError(t, op.run())
			got := rec.last(op.path)
			require.Equal(t, 200, got.status, "sent %+v", got)
			require.Equal(t, op.idem, got.idem, "Idempotency-Key")
		})
	}
	require.Equal(t, "2000", rec.last("/v1/payment_intents/pi_1/capture").form.Get("amount_to_capture"))
	// stripe-mock refuses what Stripe would: an unknown parameter.
	err = s.op(ctx, "/v1/payment_intents/pi_1/capture", []byte("amount_to_kapture=1"), "")
	require.ErrorIs(t, err, ErrRejected, "a malformed request")
}

type bodyKey struct{}

// TestStripeOutcomes maps each answer a Stripe-compatible acquirer gives
// (a fake server: stripe-mock answers fixtures only) to the gateway's.
func TestStripeOutcomes(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		body     string
		approved bool
		captured bool
		decline  string
		err      error
	}{
		{"requires capture", 200, `{"id":"pi_1","status":"requires_capture"}`, true, false, "", nil},
		{"succeeded", 200, `{"id":"pi_1","status":"succeeded"}`, true, true, "", nil},
		{"declined intent", 200, `{"id":"pi_1","status":"requires_payment_method","last_payment_error":{"code":"card_declined","decline_code":"insufficient_funds"}}`, false, false, "insufficient_funds", nil},
		{"3-D Secure needed", 200, `{"id":"pi_1","status":"requires_action"}`, false, false, "authentication_required", nil},
		{"card error 402", 402, `{"error":{"type":"card_error","code":"expired_card","payment_intent":{"id":"pi_2"}}}`, false, false, "expired_card", nil},
		{"invalid request", 400, `{"error":{"type":"invalid_request_error","code":"parameter_unknown"}}`, false, false, "", ErrRejected},
		{"rate limited", 429, `{}`, false, false, "", ErrUnavailable},
		{"same key in use", 409, `{"error":{"type":"idempotency_error","code":"idempotency_key_in_use"}}`, false, false, "", ErrInProgress},
		{"server error", 500, `{}`, false, false, "", ErrUnavailable},
		{"slow", 0, ``, false, false, "", ErrTimeout},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/payment_methods" {
					_, _ = io.WriteString(w, `{"id":"pm_1"}`)
					return
				}
				if tt.status == 0 {
					<-release
					return
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			defer close(release)
			s, err := NewStripe(StripeConfig{BaseURL: srv.URL, SecretKey: "sk_test_obol", Timeout: 200 * time.Millisecond})
			require.NoError(t, err)
			c := testCard(t, "4242424242424242")
			res, err := s.Authorize(context.Background(), AuthRequest{PaymentID: "pay_1", Amount: 100, Currency: "EUR", Card: c, IdempotencyKey: "auth:pay_1"})
			c.Wipe()
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.NotContains(t, err.Error(), "4242", "card data in the error")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.approved, res.Approved, "%+v", res)
			require.Equal(t, tt.captured, res.Captured, "%+v", res)
			require.Equal(t, tt.decline, res.DeclineCode, "%+v", res)
			require.NotEmpty(t, res.Reference, "%+v", res)
		})
	}
}

func TestNewStripeRefusesPlainHTTP(t *testing.T) {
	for _, u := range []string{"http://api.stripe.com", "ftp://x", "://"} {
		_, err := NewStripe(StripeConfig{BaseURL: u, SecretKey: "sk"})
		assert.Error(t, err, "%s accepted", u)
	}
	_, err := NewStripe(StripeConfig{BaseURL: "http://127.0.0.1:12111", SecretKey: "sk"})
	assert.NoError(t, err, "loopback stripe-mock refused")
	_, err = NewStripe(StripeConfig{SecretKey: ""})
	assert.Error(t, err, "no secret key accepted")
}

// TestAcquirerText: codes and references an acquirer sends are kept only
// when clean; anything that looks like a card number never is.
func TestAcquirerText(t *testing.T) {
	codes := []struct{ name, in, want string }{
		{"clean code", "insufficient_funds", "insufficient_funds"},
		{"empty", "", ""},
		{"card number in text", "card 4242424242424242", "unrecognized"},
		{"card number", "4242424242424242", "unrecognized"},
		{"punctuation", "Declined!", "unrecognized"},
		{"too long", strings.Repeat("a", 65), "unrecognized"},
	}
	for _, tt := range codes {
		t.Run("code/"+tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Code(tt.in), "Code(%q)", tt.in)
		})
	}
	refs := []struct {
		name, in string
		ok       bool
	}{
		{"stripe intent", "pi_3MtwBwLkdIwHu7ix28a3tqPa", true},
		{"simulator authorization", "sim_auth_sXjhDtjoTJzpQpkX", true},
		{"empty", "", false},
		{"card number inside", "ref_4242424242424242", false},
		{"spaces", "ref with spaces", false},
		{"too long", strings.Repeat("a", 256), false},
	}
	for _, tt := range refs {
		t.Run("reference/"+tt.name, func(t *testing.T) {
			if tt.ok {
				assert.NoError(t, Reference(tt.in), "Reference(%q)", tt.in)
			} else {
				assert.Error(t, Reference(tt.in), "Reference(%q)", tt.in)
			}
		})
	}
}
