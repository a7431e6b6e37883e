package payments

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMerchantEvents: the events a payment's new state owes, with ids
// derived from the payment and its version (the same state written again
// is the same event), and PAN-free REST data.
func TestMerchantEvents(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	base := func(status string) *Payment {
		return &Payment{ID: "pay_1", MerchantID: "mer_1", Status: status, Amount: 2500, AmountCaptured: 2500, Currency: "USD", Token: "tok_x",
			Card: Card{Brand: "visa", Last4: "4242", Fingerprint: "fp_1"}, CreatedAt: at, UpdatedAt: at, Version: 3}
	}
	tests := []struct {
		name string
		p    *Payment
		both bool
		want []string
	}{
		{"authorized", base(StatusAuthorized), false, []string{"payment.authorized"}},
		{"authorized and captured at once", base(StatusCaptured), true, []string{"payment.authorized", "payment.captured"}},
		{"captured later", base(StatusCaptured), false, []string{"payment.captured"}},
		{"declined", base(StatusDeclined), false, []string{"payment.declined"}},
		{"failed", base(StatusFailed), false, []string{"payment.failed"}},
		{"canceled", base(StatusCanceled), false, []string{"payment.canceled"}},
		{"processing: none", base(StatusProcessing), false, nil},
		{"refunded: refund.created says it", base(StatusPartiallyRefunded), false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := paymentEvents(tt.p, tt.both)
			var types []string
			for _, e := range es {
				types = append(types, e.Type)
				assert.EqualValues(t, 4, e.ObjectVersion, "the version after the commit")
				assert.Equal(t, "payment", e.ObjectType)
				assert.Equal(t, "mer_1", e.MerchantID)
				assert.True(t, strings.HasPrefix(e.ID, "evt_"))
				var data map[string]any
				require.NoError(t, json.Unmarshal(e.Data, &data))
				assert.Equal(t, "pay_1", data["id"])
				assert.EqualValues(t, 2500, data["amount"], "amounts are JSON numbers")
				assert.NotContains(t, string(e.Data), "tok_x", "the token is not in the merchant's event")
			}
			assert.Equal(t, tt.want, types)
			assert.Equal(t, es, paymentEvents(tt.p, tt.both), "deterministic")
		})
	}
	a, b := paymentEvents(base(StatusCaptured), true), paymentEvents(base(StatusCaptured), false)
	assert.NotEqual(t, a[0].ID, a[1].ID, "two events of one version differ by type")
	assert.Equal(t, a[1].ID, b[0].ID)
	p := base(StatusPartiallyRefunded)
	r := refundEvent(p, Refund{ID: "re_1", Amount: 400, Reason: "requested_by_customer", CreatedAt: at})
	assert.Equal(t, "refund.created", r.Type)
	assert.Equal(t, "re_1", r.ObjectID)
	assert.JSONEq(t, `{"id":"re_1","object":"refund","payment":"pay_1","amount":400,"currency":"USD","reason":"requested_by_customer","created_at":"2026-12-01T10:00:00Z"}`, string(r.Data))
}
