package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/obolpay/obol/internal/telemetry"
)

// Simulator is the connector for Obol's acquirer simulator (proxy/simulator).
type Simulator struct {
	base   *url.URL
	client *http.Client
}

// NewSimulator connects to the simulator at baseURL (https) with tlsCfg
// (its CA); timeout bounds each call.
func NewSimulator(baseURL string, tlsCfg *tls.Config, timeout time.Duration) (*Simulator, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("simulator url %q: must be https://host[:port]", baseURL)
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	return &Simulator{base: u, client: &http.Client{Transport: telemetry.Transport("acquirer simulator", tr), Timeout: timeout}}, nil
}

// Name is "simulator".
func (s *Simulator) Name() string { return "simulator" }

// Host is the simulator's host.
func (s *Simulator) Host() string { return s.base.Host }

type simAuth struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	DeclineCode string `json:"decline_code"`
	Captured    int64  `json:"captured"`
}

type simError struct {
	Error struct {
		Code string `json:"code"`
	} `json:"error"`
}

func (s *Simulator) do(ctx context.Context, path string, body []byte, idemKey string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return send(s.client, req)
}

// Authorize sends the card to the simulator.
func (s *Simulator) Authorize(ctx context.Context, r AuthRequest) (AuthResult, error) {
	pan, cvc := r.Card.Number.RevealDigits(), r.Card.CVC.RevealDigits()
	body := make([]byte, 0, 256)
	body = append(body, `{"amount":`...)
	body = strconv.AppendInt(body, r.Amount, 10)
	body = append(body, `,"currency":`...)
	body = strconv.AppendQuote(body, r.Currency)
	body = append(body, `,"capture":`...)
	body = strconv.AppendBool(body, r.Capture)
	body = append(body, `,"reference":`...)
	body = strconv.AppendQuote(body, r.PaymentID)
	body = append(body, `,"card":{"number":`...)
	body = appendJSONDigits(body, pan)
	body = append(body, `,"exp_month":`...)
	body = strconv.AppendInt(body, int64(r.Card.ExpMonth), 10)
	body = append(body, `,"exp_year":`...)
	body = strconv.AppendInt(body, int64(r.Card.ExpYear), 10)
	if len(cvc) > 0 {
		body = append(body, `,"cvc":`...)
		body = appendJSONDigits(body, cvc)
	}
	body = append(body, "}}"...)
	status, resp, err := s.do(ctx, "/v1/authorizations", body, r.IdempotencyKey)
	clear(body)
	if err != nil {
		return AuthResult{}, err
	}
	var a simAuth
	if err := json.Unmarshal(resp, &a); err != nil {
		return AuthResult{}, fmt.Errorf("%w: unreadable answer (HTTP %d)", ErrUnavailable, status)
	}
	switch {
	case status == http.StatusOK && a.Status == "approved":
		return AuthResult{Approved: true, Reference: a.ID, Captured: a.Captured > 0}, nil
	case a.Status == "declined":
		return AuthResult{Reference: a.ID, DeclineCode: a.DeclineCode}, nil
	}
	var e simError
	_ = json.Unmarshal(resp, &e)
	return AuthResult{}, fmt.Errorf("%w: HTTP %d %s", ErrRejected, status, Code(e.Error.Code))
}

func (s *Simulator) op(ctx context.Context, path string, amount int64, idemKey string) error {
	body := []byte("{}")
	if amount > 0 {
		body = []byte(`{"amount":` + strconv.FormatInt(amount, 10) + `}`)
	}
	status, resp, err := s.do(ctx, path, body, idemKey)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		var e simError
		_ = json.Unmarshal(resp, &e)
		return fmt.Errorf("%w: HTTP %d %s", ErrRejected, status, Code(e.Error.Code))
	}
	return nil
}

// Capture captures an authorization.
func (s *Simulator) Capture(ctx context.Context, ref string, amount int64, idemKey string) error {
	return s.op(ctx, "/v1/authorizations/"+url.PathEscape(ref)+"/capture", amount, idemKey)
}

// Cancel voids an authorization.
func (s *Simulator) Cancel(ctx context.Context, ref string, idemKey string) error {
	return s.op(ctx, "/v1/authorizations/"+url.PathEscape(ref)+"/cancel", 0, idemKey)
}

// Refund refunds part of a capture.
func (s *Simulator) Refund(ctx context.Context, ref string, amount int64, idemKey string) error {
	return s.op(ctx, "/v1/authorizations/"+url.PathEscape(ref)+"/refunds", amount, idemKey)
}

// Reverse voids any authorization for Obol's payment id, even one that
// completes after this call.
func (s *Simulator) Reverse(ctx context.Context, paymentID string) error {
	b, _ := json.Marshal(map[string]string{"reference": paymentID})
	status, _, err := s.do(ctx, "/v1/reversals", b, "reversal:"+paymentID)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%w: reversal HTTP %d", ErrRejected, status)
	}
	return nil
}
