package service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/eventrelay"
	eventsv1 "github.com/obolpay/obol/proto/obol/events/v1"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	"github.com/obolpay/obol/proxy/connector"
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
			es := paymentEvents(tt.p, tt.p.Version+1, tt.both)
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
			assert.Equal(t, es, paymentEvents(tt.p, tt.p.Version+1, tt.both), "deterministic")
		})
	}
	a, b := paymentEvents(base(StatusCaptured), 4, true), paymentEvents(base(StatusCaptured), 4, false)
	assert.NotEqual(t, a[0].ID, a[1].ID, "two events of one version differ by type")
	assert.Equal(t, a[1].ID, b[0].ID)
	p := base(StatusPartiallyRefunded)
	r := refundEvent(p, Refund{ID: "re_1", Amount: 400, Reason: "requested_by_customer", CreatedAt: at})
	assert.Equal(t, "refund.created", r.Type)
	assert.Equal(t, "re_1", r.ObjectID)
	assert.JSONEq(t, `{"id":"re_1","object":"refund","payment":"pay_1","amount":400,"currency":"USD","reason":"requested_by_customer","created_at":"2026-12-01T10:00:00Z"}`, string(r.Data))
}

// TestMerchantEventsWritten: the events are written with the state change
// (a refund's refund.created with the refund; a retry of the same request
// adds none; a commit refused by its version check writes none) and the
// event relay reads and marks them.
func TestMerchantEventsWritten(t *testing.T) {
	st := backends(t)["sqlite"](t)
	clk := newClock()
	acq := &keyedAcquirer{refunds: map[string]int{}, busy: map[string]bool{}}
	s := New(Config{Store: st, Vault: merchantVault{}, Ledger: &fakeLedger{calls: map[string]int{}}, Connectors: map[string]connector.Connector{"simulator": acq}, Now: clk.Now, NewTicker: never})
	p := capturedPayment(t, st, clk.Now())
	req := &gatewayv1.RefundPaymentRequest{Id: p.ID, Amount: 400, Reason: "requested_by_customer"}
	out, err := s.RefundPayment(authed("r1"), req)
	require.NoError(t, err)
	_, err = s.RefundPayment(authed("r1"), req)
	require.NoError(t, err, "retried")
	es, err := st.Events(context.Background(), "", 100)
	require.NoError(t, err)
	require.Len(t, es, 1, "one refund.created for one refund")
	assert.Equal(t, "refund.created", es[0].Type)
	assert.Equal(t, out.GetRefunds()[0].GetId(), es[0].ObjectID)
	assert.Equal(t, "pending", es[0].State)

	stale := *p
	stale.Status = StatusCanceled
	err = st.Commit(context.Background(), &stale, merchantEntries(paymentEvents(&stale, stale.Version+1, false)...), clk.Now())
	require.ErrorIs(t, err, ErrConcurrentUpdate)
	es, err = st.Events(context.Background(), "", 100)
	require.NoError(t, err)
	assert.Len(t, es, 1, "a refused commit writes no event")

	clk.Advance(time.Second) // events of one commit are a microsecond apart
	pub := &recordingPublisher{}
	r := eventrelay.New(eventrelay.Config{Outbox: EventOutbox(st), Publisher: pub, Token: "t", Name: "gateway_test", Now: clk.Now})
	res, err := r.Once(context.Background())
	require.NoError(t, err)
	assert.Equal(t, eventrelay.Result{Delivered: 1}, res)
	assert.Equal(t, []string{es[0].ID}, pub.ids)
	es, err = st.Events(context.Background(), "delivered", 100)
	require.NoError(t, err)
	assert.Len(t, es, 1)
}

type recordingPublisher struct{ ids []string }

func (p *recordingPublisher) PublishEvents(_ context.Context, in *eventsv1.PublishEventsRequest, _ ...grpc.CallOption) (*eventsv1.PublishEventsResponse, error) {
	for _, e := range in.GetEvents() {
		p.ids = append(p.ids, e.GetId())
	}
	return &eventsv1.PublishEventsResponse{Published: int32(len(in.GetEvents()))}, nil
}
