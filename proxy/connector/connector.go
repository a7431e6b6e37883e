// Package connector is the gateway's acquirer connectors: each turns a
// payment operation into its acquirer's API call. Authorize is the only call
// that carries card data; the card's bytes are written into the request
// buffer directly (no string copies) and the buffer is wiped after sending.
// PCI zone (proxy/).
package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/obolpay/obol/proxy/panscan"
	"github.com/obolpay/obol/vault/card"
)

// Failure modes every connector reports the same way.
var (
	// ErrTimeout: the acquirer did not answer in time; the outcome is
	// unknown, so the caller reverses.
	ErrTimeout = errors.New("acquirer timeout")
	// ErrUnavailable: the acquirer could not be reached, failed (5xx) or
	// asked to slow down (429). Only when the error also matches ErrNotSent
	// is it certain that the acquirer never received the request; otherwise
	// (a 5xx, a reset after the request was written, a cancellation) it may
	// have acted, and the caller treats the outcome as unknown.
	ErrUnavailable = errors.New("acquirer unavailable")
	// ErrNotSent marks a failure that happened before any byte of the
	// request reached the acquirer (the connection was refused or could
	// not be dialled), or that the acquirer answered without processing
	// the request (429): nothing happened there.
	ErrNotSent = errors.New("request not sent")
	// ErrInProgress: the acquirer is still processing another request with
	// the same idempotency key (Stripe's 409 idempotency_key_in_use). The
	// outcome is unknown until a retry with the same key replays it.
	ErrInProgress = errors.New("acquirer request with this idempotency key in progress")
	// ErrRejected: the acquirer refused an operation on an existing
	// authorization (e.g. capture above the authorization).
	ErrRejected = errors.New("acquirer rejected the operation")
)

// AuthRequest is an authorization.
type AuthRequest struct {
	// PaymentID is Obol's payment id, sent as the acquirer's reference and
	// used for reversals.
	PaymentID      string
	Amount         int64
	Currency       string
	Capture        bool
	Card           card.Card
	IdempotencyKey string
}

// AuthResult is the acquirer's answer.
type AuthResult struct {
	Approved    bool
	Reference   string // the acquirer's id for the authorization
	DeclineCode string
	Captured    bool
}

// Connector is one acquirer.
type Connector interface {
	Name() string
	// Host is where card data goes (for the audit trail).
	Host() string
	Authorize(ctx context.Context, r AuthRequest) (AuthResult, error)
	Capture(ctx context.Context, ref string, amount int64, idemKey string) error
	Cancel(ctx context.Context, ref string, idemKey string) error
	Refund(ctx context.Context, ref string, amount int64, idemKey string) error
	// Reverse voids whatever the acquirer may have authorized for a payment
	// whose authorization timed out (by Obol's payment id).
	Reverse(ctx context.Context, paymentID string) error
}

// appendJSONDigits appends b as a JSON string (digits only: no escaping).
func appendJSONDigits(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, b...)
	return append(dst, '"')
}

// send does one acquirer call and classifies its failure the same way for
// every connector: a timeout is ErrTimeout (the outcome is unknown); a
// refused connection, a 5xx or a 429 is ErrUnavailable, and only a failed
// dial and a 429 are also ErrNotSent (nothing reached the acquirer, or it
// refused to process the request); a 5xx, a connection lost after the
// request was written and a cancelled context leave the outcome unknown.
// A 409 idempotency_key_in_use is ErrInProgress. Other answers come back
// with their status and body (at most 1 MiB). Transport errors carry no
// request details.
func send(c *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := c.Do(req)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			return 0, nil, ErrTimeout
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return 0, nil, fmt.Errorf("%w: %w: %v", ErrUnavailable, ErrNotSent, redactURL(err))
		}
		return 0, nil, fmt.Errorf("%w: %v", ErrUnavailable, redactURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, ErrTimeout
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return resp.StatusCode, nil, fmt.Errorf("%w: %w: HTTP %d", ErrUnavailable, ErrNotSent, resp.StatusCode)
	case resp.StatusCode >= 500:
		return resp.StatusCode, nil, fmt.Errorf("%w: HTTP %d", ErrUnavailable, resp.StatusCode)
	case resp.StatusCode == http.StatusConflict && inUse(b):
		return resp.StatusCode, nil, fmt.Errorf("%w: HTTP %d", ErrInProgress, resp.StatusCode)
	}
	return resp.StatusCode, b, nil
}

// inUse reports whether a 409 answer says that a request with the same
// idempotency key is still being processed (Stripe's and the simulator's
// error code idempotency_key_in_use).
func inUse(body []byte) bool {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error.Code == "idempotency_key_in_use"
}

// redactURL keeps transport errors free of request details.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Code is an acquirer's decline or error code as the gateway keeps it:
// lower-case letters, digits and _ (at most 64), holding nothing that looks
// like a card number; anything else becomes "unrecognized". Acquirer text
// is not trusted to stay out of logs and answers otherwise.
func Code(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 64 || panscan.Contains(s) {
		return "unrecognized"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "unrecognized"
		}
	}
	return s
}

// Reference checks an acquirer's id for an authorization before the
// gateway stores and returns it: at most 255 characters of letters, digits
// and _ - . :, and nothing that looks like a card number.
func Reference(s string) error {
	if s == "" || len(s) > 255 || panscan.Contains(s) {
		return fmt.Errorf("%w: unusable authorization reference", ErrRejected)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.:", c)) {
			return fmt.Errorf("%w: unusable authorization reference", ErrRejected)
		}
	}
	return nil
}
