package service

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/apierr"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
)

// TestCheckPaymentText: the description and metadata are scanned as a
// whole (a card number split across values, or grouped by dots, slashes or
// other separators, is still a card number) and every other text field
// that is stored or sent to riskd is scanned too.
func TestCheckPaymentText(t *testing.T) {
	cases := []struct {
		name  string
		req   *gatewayv1.CreatePaymentRequest
		field string // "" when accepted
	}{
		{"plain", &gatewayv1.CreatePaymentRequest{Description: "order 1234", Metadata: map[string]string{"order": "1234", "sku": "A-77"}}, ""},
		{"timestamp", &gatewayv1.CreatePaymentRequest{Description: "placed 2026-12-01 15:30:00"}, ""},
		{"dots", &gatewayv1.CreatePaymentRequest{Description: "4242.4242.4242.4242"}, "description"},
		{"underscores", &gatewayv1.CreatePaymentRequest{Description: "4242_4242_4242_4242"}, "description"},
		{"split across values", &gatewayv1.CreatePaymentRequest{Metadata: map[string]string{"p1": "4242 4242", "p2": "4242 4242"}}, "metadata"},
		{"split across four values", &gatewayv1.CreatePaymentRequest{Metadata: map[string]string{"a": "5555", "b": "5555", "c": "5555", "d": "4444"}}, "metadata"},
		{"in a key", &gatewayv1.CreatePaymentRequest{Metadata: map[string]string{"4242424242424242": "x"}}, "metadata"},
		{"split between description and metadata", &gatewayv1.CreatePaymentRequest{Description: "4242 4242", Metadata: map[string]string{"a": "4242 4242"}}, "metadata"},
		{"device id", &gatewayv1.CreatePaymentRequest{DeviceId: "4242424242424242"}, "device_id"},
		{"customer ip", &gatewayv1.CreatePaymentRequest{CustomerIp: "4242.4242.4242.4242"}, "customer_ip"},
		{"email hash", &gatewayv1.CreatePaymentRequest{EmailHash: "4242-4242-4242-4242"}, "email_hash"},
		{"billing country", &gatewayv1.CreatePaymentRequest{BillingCountry: "4242424242424242"}, "billing_country"},
		// Bypasses the pentest found (each was accepted and stored).
		{"fullwidth description", &gatewayv1.CreatePaymentRequest{Description: "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"}, "description"},
		{"arabic-indic description", &gatewayv1.CreatePaymentRequest{Description: "\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661"}, "description"},
		{"superscript description", &gatewayv1.CreatePaymentRequest{Description: "\u2074\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9\u00b9"}, "description"},
		{"percent-encoded description", &gatewayv1.CreatePaymentRequest{Description: "%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31"}, "description"},
		{"html entity description", &gatewayv1.CreatePaymentRequest{Description: "&#52;111111111111111"}, "description"},
		{"fullwidth device id", &gatewayv1.CreatePaymentRequest{DeviceId: "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"}, "device_id"},
		{"split across keys", &gatewayv1.CreatePaymentRequest{Metadata: map[string]string{"41111111": "x", "51111112": "y"}}, "metadata"},
		{"split between key and value", &gatewayv1.CreatePaymentRequest{Metadata: map[string]string{"41111111": "11111111"}}, "metadata"},
		{"split between value and next key", &gatewayv1.CreatePaymentRequest{Metadata: map[string]string{"0": "41111111", "11111111": "z"}}, "metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPaymentText(tc.req)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			e := apierr.From(err)
			assert.Equal(t, CodeCardNumberInText, e.Code)
			assert.Equal(t, tc.field, e.Field)
			assert.Equal(t, 400, e.HTTPStatus())
			assert.NotContains(t, e.Message, "4242")
		})
	}
	require.Error(t, checkRefundText(&gatewayv1.RefundPaymentRequest{Reason: "card 4242.4242.4242.4242"}))
	require.NoError(t, checkRefundText(&gatewayv1.RefundPaymentRequest{Reason: "customer request 2026-12-01"}))
}
