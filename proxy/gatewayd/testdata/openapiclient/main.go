// Command openapiclient is a merchant's program written against a client
// generated from Obol's merged OpenAPI document (proto/openapi) with
// oapi-codegen: it tokenizes a card with the publishable key, then
// authorizes, captures and refunds with the secret key, and checks a typed
// error answer. TestGeneratedClient (proxy/gatewayd) generates the client
// package next to this file in a temporary module, runs it against the real
// stack and reads the one JSON line it prints. It is not part of Obol's
// build (testdata).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"obolclient/obol"
)

func main() {
	out, err := run(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapiclient:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func bearer(key string) obol.ClientOption {
	return obol.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+key)
		return nil
	})
}

func key(s string) *obol.IdempotencyKey { return &s }

// Result is what the program saw, for the test to check.
type Result struct {
	Token          string `json:"token"`
	Payment        string `json:"payment"`
	Authorized     string `json:"authorized"`
	Amount         int64  `json:"amount"`
	Captured       int64  `json:"captured"`
	Refunded       int64  `json:"refunded"`
	Remaining      int64  `json:"remaining"`
	Fee            int64  `json:"fee"`
	Status         string `json:"status"`
	OverCapture    string `json:"over_capture"`
	RawAmountKinds string `json:"raw_amount_kinds"`
}

func run(ctx context.Context) (*Result, error) {
	vault, err := obol.NewClientWithResponses(os.Getenv("OBOL_VAULT_URL"), bearer(os.Getenv("OBOL_PUBLISHABLE_KEY")))
	if err != nil {
		return nil, err
	}
	gw, err := obol.NewClientWithResponses(os.Getenv("OBOL_GATEWAY_URL"), bearer(os.Getenv("OBOL_SECRET_KEY")))
	if err != nil {
		return nil, err
	}
	cvc := "123"
	tok, err := vault.TokenizeWithResponse(ctx, &obol.TokenizeParams{}, // a publishable key sends no Idempotency-Key
		obol.TokenizeRequest{Card: obol.CardInput{Number: os.Getenv("OBOL_CARD"), ExpMonth: 12, ExpYear: 2031, Cvc: &cvc}})
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	if tok.JSON200 == nil {
		return nil, fmt.Errorf("tokenize: %d %s", tok.StatusCode(), tok.Body)
	}
	res := &Result{Token: tok.JSON200.Token}

	// amount is an int64 in the generated type: sent as the JSON number 2500.
	pay, err := gw.CreatePaymentWithResponse(ctx, &obol.CreatePaymentParams{IdempotencyKey: key("order-1")},
		obol.CreatePaymentRequest{Token: res.Token, Amount: 2500, Currency: "USD"})
	if err != nil {
		return nil, fmt.Errorf("create payment: %w", err)
	}
	if pay.JSON200 == nil {
		return nil, fmt.Errorf("create payment: %d %s", pay.StatusCode(), pay.Body)
	}
	res.Payment, res.Authorized, res.Amount = pay.JSON200.Id, pay.JSON200.Status, pay.JSON200.Amount

	// A typed error answer: more than the authorization.
	over := pay.JSON200.Amount + 500
	bad, err := gw.CapturePaymentWithResponse(ctx, res.Payment, &obol.CapturePaymentParams{}, obol.CapturePaymentBody{Amount: &over})
	if err != nil {
		return nil, fmt.Errorf("over-capture: %w", err)
	}
	if bad.JSON409 == nil {
		return nil, fmt.Errorf("over-capture: %d %s", bad.StatusCode(), bad.Body)
	}
	res.OverCapture = bad.JSON409.Error.Code

	capt, err := gw.CapturePaymentWithResponse(ctx, res.Payment, &obol.CapturePaymentParams{IdempotencyKey: key("capture-1")}, obol.CapturePaymentBody{})
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if capt.JSON200 == nil || capt.JSON200.AmountCaptured == nil {
		return nil, fmt.Errorf("capture: %d %s", capt.StatusCode(), capt.Body)
	}
	part := *capt.JSON200.AmountCaptured - 1500 // arithmetic on the answer's amount
	ref, err := gw.RefundPaymentWithResponse(ctx, res.Payment, &obol.RefundPaymentParams{IdempotencyKey: key("refund-1")}, obol.RefundPaymentBody{Amount: &part})
	if err != nil {
		return nil, fmt.Errorf("refund: %w", err)
	}
	if ref.JSON200 == nil || ref.JSON200.AmountCaptured == nil || ref.JSON200.AmountRefunded == nil || ref.JSON200.Fee == nil {
		return nil, fmt.Errorf("refund: %d %s", ref.StatusCode(), ref.Body)
	}
	p := ref.JSON200
	res.Captured, res.Refunded, res.Fee, res.Status = *p.AmountCaptured, *p.AmountRefunded, *p.Fee, p.Status
	res.Remaining = *p.AmountCaptured - *p.AmountRefunded

	// The wire form itself: each amount is a JSON number, not a string.
	var raw map[string]any
	if err := json.Unmarshal(ref.Body, &raw); err != nil {
		return nil, err
	}
	for _, f := range []string{"amount", "amount_captured", "amount_refunded", "fee"} {
		res.RawAmountKinds += fmt.Sprintf("%s:%T ", f, raw[f])
	}
	return res, nil
}
