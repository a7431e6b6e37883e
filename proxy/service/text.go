package service

import (
	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cardtext"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
)

// CodeCardNumberInText: free text the gateway stores, returns or passes to
// riskd looks like it carries a card number.
const CodeCardNumberInText = "card_number_in_text"

func cardInText(field string) error {
	return apierr.Invalid(CodeCardNumberInText, field, field+" looks like it contains a card number; send cards only as tokens")
}

// checkPaymentText refuses a payment whose free text looks like it carries
// a card number (internal/cardtext: any grouping separator, any digit
// script, escapes). The description alone, then description and metadata
// as a whole (cardtext.ContainsMetadata: values, keys, and keys and values
// interleaved, in key order, so a number split across values, keys, or a
// key and its value is still found). The other text fields, which go to
// riskd (outside PCI scope), are checked one by one.
func checkPaymentText(req *gatewayv1.CreatePaymentRequest) error {
	switch {
	case cardtext.Contains(req.GetDescription()):
		return cardInText("description")
	case cardtext.ContainsMetadata(req.GetDescription(), req.GetMetadata()):
		return cardInText("metadata")
	}
	for _, f := range []struct{ name, v string }{
		{"customer_ip", req.GetCustomerIp()},
		{"billing_country", req.GetBillingCountry()},
		{"email_hash", req.GetEmailHash()},
		{"device_id", req.GetDeviceId()},
		{"acquirer", req.GetAcquirer()},
	} {
		if cardtext.Contains(f.v) {
			return cardInText(f.name)
		}
	}
	return nil
}

// checkRefundText refuses a refund reason that looks like it carries a
// card number (the reason is stored and returned).
func checkRefundText(req *gatewayv1.RefundPaymentRequest) error {
	if cardtext.Contains(req.GetReason()) {
		return cardInText("reason")
	}
	return nil
}
