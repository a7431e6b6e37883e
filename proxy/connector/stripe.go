package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/telemetry"
)

// Stripe is the connector for Stripe's API (and Stripe-compatible
// acquirers): the revealed card becomes a PaymentMethod, then a
// PaymentIntent is confirmed with manual or automatic capture. Capture,
// cancel and refunds map to Stripe's endpoints, and every write carries an
// Idempotency-Key derived from the gateway's. Requires an account allowed
// to send raw card data (a PCI-validated platform, which Obol is).
type Stripe struct {
	base   *url.URL
	key    string
	client *http.Client
}

// StripeConfig configures the connector.
type StripeConfig struct {
	// BaseURL is https://api.stripe.com by default; http is allowed on
	// loopback only (stripe-mock in tests).
	BaseURL string
	// SecretKey is the Stripe secret key (sk_…).
	SecretKey string
	TLS       *tls.Config
	// Timeout bounds each call.
	Timeout time.Duration
}

// NewStripe builds the connector.
func NewStripe(cfg StripeConfig) (*Stripe, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.stripe.com"
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("stripe url %q: must be https://host[:port]", cfg.BaseURL)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, fmt.Errorf("stripe url %q: card data goes over https only (http is allowed on loopback, for stripe-mock)", cfg.BaseURL)
	}
	if cfg.SecretKey == "" {
		return nil, errors.New("stripe: a secret key is required (OBOL_STRIPE_SECRET_KEY)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := &http.Transport{TLSClientConfig: cfg.TLS, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	return &Stripe{base: u, key: cfg.SecretKey, client: &http.Client{Transport: telemetry.Transport("acquirer stripe", tr), Timeout: cfg.Timeout}}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name is "stripe".
func (s *Stripe) Name() string { return "stripe" }

// Host is Stripe's API host.
func (s *Stripe) Host() string { return s.base.Host }

type stripeError struct {
	Error struct {
		Type          string `json:"type"`
		Code          string `json:"code"`
		DeclineCode   string `json:"decline_code"`
		PaymentIntent struct {
			ID string `json:"id"`
		} `json:"payment_intent"`
	} `json:"error"`
}

type stripeIntent struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	LastPaymentError *struct {
		Code        string `json:"code"`
		DeclineCode string `json:"decline_code"`
	} `json:"last_payment_error"`
}

// do sends a form-encoded request. Answers: (status, body) for 2xx and
// 4xx; ErrTimeout or ErrUnavailable (5xx, 429, transport) otherwise.
func (s *Stripe) do(ctx context.Context, method, path string, form []byte, idemKey string) (int, []byte, error) {
	var body io.Reader
	if form != nil {
		body = bytes.NewReader(form)
	}
	path, query, _ := strings.Cut(path, "?")
	u := s.base.JoinPath(path)
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return send(s.client, req)
}

func appendForm(dst []byte, key, value string) []byte {
	if len(dst) > 0 {
		dst = append(dst, '&')
	}
	dst = append(dst, url.QueryEscape(key)...)
	dst = append(dst, '=')
	return append(dst, url.QueryEscape(value)...)
}

// Authorize creates the PaymentMethod from the card and confirms a
// PaymentIntent with it.
func (s *Stripe) Authorize(ctx context.Context, r AuthRequest) (AuthResult, error) {
	pan, cvc := r.Card.Number.RevealDigits(), r.Card.CVC.RevealDigits()
	form := make([]byte, 0, 256)
	form = appendForm(form, "type", "card")
	form = append(form, "&card%5Bnumber%5D="...)
	form = append(form, pan...) // digits: nothing to escape
	form = appendForm(form, "card[exp_month]", strconv.Itoa(r.Card.ExpMonth))
	form = appendForm(form, "card[exp_year]", strconv.Itoa(r.Card.ExpYear))
	if len(cvc) > 0 {
		form = append(form, "&card%5Bcvc%5D="...)
		form = append(form, cvc...)
	}
	form = appendForm(form, "metadata[obol_payment_id]", r.PaymentID)
	status, resp, err := s.do(ctx, http.MethodPost, "/v1/payment_methods", form, idem(r.IdempotencyKey, "pm"))
	clear(form)
	if err != nil {
		return AuthResult{}, err
	}
	if status != http.StatusOK {
		return stripeDecline(status, resp)
	}
	var pm struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp, &pm); err != nil || pm.ID == "" {
		return AuthResult{}, fmt.Errorf("%w: unreadable payment method (HTTP %d)", ErrUnavailable, status)
	}

	captureMethod := "manual"
	if r.Capture {
		captureMethod = "automatic"
	}
	var f []byte
	f = appendForm(f, "amount", strconv.FormatInt(r.Amount, 10))
	f = appendForm(f, "currency", strings.ToLower(r.Currency))
	f = appendForm(f, "payment_method", pm.ID)
	f = appendForm(f, "payment_method_types[]", "card")
	f = appendForm(f, "confirm", "true")
	f = appendForm(f, "capture_method", captureMethod)
	f = appendForm(f, "metadata[obol_payment_id]", r.PaymentID)
	status, resp, err = s.do(ctx, http.MethodPost, "/v1/payment_intents", f, idem(r.IdempotencyKey, ""))
	if err != nil {
		return AuthResult{}, err
	}
	if status != http.StatusOK {
		return stripeDecline(status, resp)
	}
	var pi stripeIntent
	if err := json.Unmarshal(resp, &pi); err != nil || pi.ID == "" {
		return AuthResult{}, fmt.Errorf("%w: unreadable payment intent (HTTP %d)", ErrUnavailable, status)
	}
	switch pi.Status {
	case "succeeded":
		return AuthResult{Approved: true, Reference: pi.ID, Captured: true}, nil
	case "requires_capture", "processing":
		return AuthResult{Approved: true, Reference: pi.ID}, nil
	case "requires_action":
		return AuthResult{Reference: pi.ID, DeclineCode: "authentication_required"}, nil
	}
	code := "card_declined"
	if e := pi.LastPaymentError; e != nil && (e.DeclineCode != "" || e.Code != "") {
		code = e.DeclineCode
		if code == "" {
			code = e.Code
		}
	}
	return AuthResult{Reference: pi.ID, DeclineCode: code}, nil
}

func idem(key, suffix string) string {
	if key == "" || suffix == "" {
		return key
	}
	return key + ":" + suffix
}

// stripeDecline reads a 4xx: a card error is a decline with Stripe's code;
// anything else is a refusal of the request.
func stripeDecline(status int, resp []byte) (AuthResult, error) {
	var e stripeError
	_ = json.Unmarshal(resp, &e)
	if status == http.StatusPaymentRequired || e.Error.Type == "card_error" {
		code := e.Error.DeclineCode
		if code == "" {
			code = e.Error.Code
		}
		if code == "" {
			code = "card_declined"
		}
		return AuthResult{Reference: e.Error.PaymentIntent.ID, DeclineCode: code}, nil
	}
	return AuthResult{}, fmt.Errorf("%w: HTTP %d %s", ErrRejected, status, Code(e.Error.Code))
}

func (s *Stripe) op(ctx context.Context, path string, form []byte, idemKey string) error {
	status, resp, err := s.do(ctx, http.MethodPost, path, form, idemKey)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		var e stripeError
		_ = json.Unmarshal(resp, &e)
		return fmt.Errorf("%w: HTTP %d %s", ErrRejected, status, Code(e.Error.Code))
	}
	return nil
}

// Capture captures a PaymentIntent (amount_to_capture).
func (s *Stripe) Capture(ctx context.Context, ref string, amount int64, idemKey string) error {
	var f []byte
	if amount > 0 {
		f = appendForm(f, "amount_to_capture", strconv.FormatInt(amount, 10))
	}
	return s.op(ctx, "/v1/payment_intents/"+url.PathEscape(ref)+"/capture", nonNil(f), idemKey)
}

// Cancel cancels an uncaptured PaymentIntent.
func (s *Stripe) Cancel(ctx context.Context, ref string, idemKey string) error {
	return s.op(ctx, "/v1/payment_intents/"+url.PathEscape(ref)+"/cancel", []byte{}, idemKey)
}

// Refund refunds part of a captured PaymentIntent.
func (s *Stripe) Refund(ctx context.Context, ref string, amount int64, idemKey string) error {
	f := appendForm(nil, "payment_intent", ref)
	if amount > 0 {
		f = appendForm(f, "amount", strconv.FormatInt(amount, 10))
	}
	return s.op(ctx, "/v1/refunds", f, idemKey)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Reverse finds the PaymentIntents made for Obol's payment id (by
// metadata) and cancels the uncaptured ones and refunds the captured ones.
func (s *Stripe) Reverse(ctx context.Context, paymentID string) error {
	q := url.Values{"query": {"metadata['obol_payment_id']:'" + strings.ReplaceAll(paymentID, "'", "") + "'"}}
	status, resp, err := s.do(ctx, http.MethodGet, "/v1/payment_intents/search?"+q.Encode(), nil, "")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%w: search HTTP %d", ErrRejected, status)
	}
	var found struct {
		Data []stripeIntent `json:"data"`
	}
	if err := json.Unmarshal(resp, &found); err != nil {
		return fmt.Errorf("%w: unreadable search answer", ErrUnavailable)
	}
	for _, pi := range found.Data {
		var err error
		switch pi.Status {
		case "canceled":
		case "succeeded":
			err = s.Refund(ctx, pi.ID, 0, "reversal:"+paymentID+":"+pi.ID)
		default:
			err = s.Cancel(ctx, pi.ID, "reversal:"+paymentID+":"+pi.ID)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
