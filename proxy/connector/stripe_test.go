package connector

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/card"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testCard(t *testing.T, pan string) card.Card {
	t.Helper()
	c, err := card.Parse(card.Input{Number: pan, ExpMonth: 12, ExpYear: 2031, CVC: "123"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
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
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	for _, capture := range []bool{false, true} {
		c := testCard(t, "4242424242424242")
		res, err := s.Authorize(ctx, AuthRequest{PaymentID: "pay_stripe1", Amount: 2500, Currency: "USD", Capture: capture, Card: c, IdempotencyKey: "auth:pay_stripe1"})
		c.Wipe()
		if err != nil {
			t.Fatalf("authorize (capture %v): %v", capture, err)
		}
		// stripe-mock's fixture intent is requires_payment_method, which a
		// real Stripe returns for a declined confirmation.
		if res.Reference == "" || res.Approved || res.DeclineCode == "" {
			t.Fatalf("authorize (capture %v): %+v", capture, res)
		}
		pm, pi := rec.last("/v1/payment_methods"), rec.last("/v1/payment_intents")
		want := map[string]string{"capture_method": "manual", "confirm": "true", "currency": "usd", "amount": "2500", "metadata[obol_payment_id]": "pay_stripe1"}
		if capture {
			want["capture_method"] = "automatic"
		}
		for k, v := range want {
			if got := pi.form.Get(k); got != v {
				t.Errorf("payment intent %s = %q, want %q", k, got, v)
			}
		}
		if pm.status != 200 || pi.status != 200 || pm.idem != "auth:pay_stripe1:pm" || pi.idem != "auth:pay_stripe1" || pm.form.Get("card[number]") != "4242424242424242" || pm.form.Get("card[cvc]") != "123" {
			t.Fatalf("requests: pm %+v pi %+v", pm, pi)
		}
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
			if err := op.run(); err != nil {
				t.Fatal(err)
			}
			got := rec.last(op.path)
			if got.status != 200 || got.idem != op.idem {
				t.Fatalf("sent %+v, want 200 with Idempotency-Key %q", got, op.idem)
			}
		})
	}
	if got := rec.last("/v1/payment_intents/pi_1/capture").form.Get("amount_to_capture"); got != "2000" {
		t.Fatalf("amount_to_capture %q", got)
	}
	// stripe-mock refuses what Stripe would: an unknown parameter.
	if err := s.op(ctx, "/v1/payment_intents/pi_1/capture", []byte("amount_to_kapture=1"), ""); !errors.Is(err, ErrRejected) {
		t.Fatalf("a malformed request: %v, want ErrRejected", err)
	}
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
			if err != nil {
				t.Fatal(err)
			}
			c := testCard(t, "4242424242424242")
			res, err := s.Authorize(context.Background(), AuthRequest{PaymentID: "pay_1", Amount: 100, Currency: "EUR", Card: c, IdempotencyKey: "auth:pay_1"})
			c.Wipe()
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				if strings.Contains(err.Error(), "4242") {
					t.Fatalf("card data in the error: %v", err)
				}
				return
			}
			if err != nil || res.Approved != tt.approved || res.Captured != tt.captured || res.DeclineCode != tt.decline || res.Reference == "" {
				t.Fatalf("got %+v %v", res, err)
			}
		})
	}
}

func TestNewStripeRefusesPlainHTTP(t *testing.T) {
	for _, u := range []string{"http://api.stripe.com", "ftp://x", "://"} {
		if _, err := NewStripe(StripeConfig{BaseURL: u, SecretKey: "sk"}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	if _, err := NewStripe(StripeConfig{BaseURL: "http://127.0.0.1:12111", SecretKey: "sk"}); err != nil {
		t.Errorf("loopback stripe-mock refused: %v", err)
	}
	if _, err := NewStripe(StripeConfig{SecretKey: ""}); err == nil {
		t.Error("no secret key accepted")
	}
}

// TestAcquirerText: codes and references an acquirer sends are kept only
// when clean; anything that looks like a card number never is.
func TestAcquirerText(t *testing.T) {
	codes := []struct{ in, want string }{
		{"insufficient_funds", "insufficient_funds"},
		{"", ""},
		{"card 4242424242424242", "unrecognized"},
		{"4242424242424242", "unrecognized"},
		{"Declined!", "unrecognized"},
		{strings.Repeat("a", 65), "unrecognized"},
	}
	for _, tt := range codes {
		if got := Code(tt.in); got != tt.want {
			t.Errorf("Code(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	refs := []struct {
		in string
		ok bool
	}{
		{"pi_3MtwBwLkdIwHu7ix28a3tqPa", true},
		{"sim_auth_sXjhDtjoTJzpQpkX", true},
		{"", false},
		{"ref_4242424242424242", false},
		{"ref with spaces", false},
		{strings.Repeat("a", 256), false},
	}
	for _, tt := range refs {
		if err := Reference(tt.in); (err == nil) != tt.ok {
			t.Errorf("Reference(%q): %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}
