package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// disputeLedger answers the dispute reads with err, or with one dispute
// of the merchant it was asked for; it records the merchants it was asked
// for.
type disputeLedger struct {
	ledgerv1.LedgerServiceClient
	err       error
	merchants []string
	calls     int
}

func (l *disputeLedger) answer(m string) error {
	l.calls++
	l.merchants = append(l.merchants, m)
	return l.err
}

func (l *disputeLedger) ListDisputes(_ context.Context, r *ledgerv1.ListDisputesRequest, _ ...grpc.CallOption) (*ledgerv1.ListDisputesResponse, error) {
	if err := l.answer(r.GetMerchantId()); err != nil {
		return nil, err
	}
	return &ledgerv1.ListDisputesResponse{Disputes: []*ledgerv1.Dispute{{Id: "dp_1", PaymentId: "pay_1", MerchantId: r.GetMerchantId(), Amount: 10, Status: "won"}}}, nil
}

func (l *disputeLedger) GetDispute(_ context.Context, r *ledgerv1.GetDisputeRequest, _ ...grpc.CallOption) (*ledgerv1.Dispute, error) {
	if err := l.answer(r.GetMerchantId()); err != nil {
		return nil, err
	}
	return &ledgerv1.Dispute{Id: r.GetId(), PaymentId: "pay_1", MerchantId: r.GetMerchantId(), Amount: 10, Status: "lost"}, nil
}

func (l *disputeLedger) GetDisputedAmounts(_ context.Context, r *ledgerv1.GetDisputedAmountsRequest, _ ...grpc.CallOption) (*ledgerv1.GetDisputedAmountsResponse, error) {
	if err := l.answer(r.GetMerchantId()); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, id := range r.GetPaymentIds() {
		out[id] = 600
	}
	return &ledgerv1.GetDisputedAmountsResponse{Amounts: out}, nil
}

func typed(kind apierr.Kind, code, field string) error {
	return apierr.New(kind, code, field, "refused").GRPCStatus().Err()
}

// TestDisputesFronting: the gateway forwards dispute reads with the
// authenticated merchant's id, keeps the ledger's typed refusals (its
// field names mapped to the gateway's) and fails closed when the ledger
// cannot answer; a payment that was never captured reads without it.
func TestDisputesFronting(t *testing.T) {
	st := backends(t)["sqlite"](t)
	now := time.Now()
	captured := capturedPayment(t, st, now)
	uncaptured := &Payment{ID: "pay_open", MerchantID: "mer_1", Status: StatusAuthorized, Amount: 1000, Currency: "USD", Token: "tok_x",
		Acquirer: "simulator", CreatedAt: now, UpdatedAt: now, Version: 1}
	require.NoError(t, st.Insert(context.Background(), uncaptured))
	tests := []struct {
		name        string
		ledgerErr   error
		kind        apierr.Kind
		code, field string
	}{
		{"answers", nil, 0, "", ""},
		{"ledger down", status.Error(codes.Unavailable, "connection refused"), apierr.KindUnavailable, "ledger_unavailable", ""},
		{"ledger slow", status.Error(codes.DeadlineExceeded, "deadline"), apierr.KindUnavailable, "ledger_unavailable", ""},
		{"ledger fails", status.Error(codes.Internal, "boom"), apierr.KindUnavailable, "ledger_unavailable", ""},
		{"not found", typed(apierr.KindNotFound, "dispute_not_found", "id"), apierr.KindNotFound, "dispute_not_found", "id"},
		{"bad payment filter", typed(apierr.KindInvalidArgument, "payment_id_invalid", "payment_id"), apierr.KindInvalidArgument, "payment_id_invalid", "payment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			led := &disputeLedger{err: tt.ledgerErr}
			s := New(Config{Store: st, Vault: merchantVault{}, Ledger: led, Now: time.Now, NewTicker: never})
			check := func(what string, err error) {
				t.Helper()
				if tt.ledgerErr == nil {
					require.NoError(t, err, what)
					return
				}
				ae := apierr.From(err)
				require.NotNil(t, ae, what)
				assert.Equal(t, tt.kind, ae.Kind, what)
				assert.Equal(t, tt.code, ae.Code, what)
				assert.Equal(t, tt.field, ae.Field, what)
			}
			list, err := s.Disputes().ListDisputes(authed(""), &gatewayv1.ListDisputesRequest{})
			check("list", err)
			d, err := s.Disputes().GetDispute(authed(""), &gatewayv1.GetDisputeRequest{Id: "dp_1"})
			check("get", err)
			p, err := s.GetPayment(authed(""), &gatewayv1.GetPaymentRequest{Id: captured.ID})
			if tt.ledgerErr != nil {
				ae := apierr.From(err)
				require.NotNil(t, ae, "captured payment")
				assert.Equal(t, "ledger_unavailable", ae.Code, "a captured payment's read fails closed on any ledger refusal")
			} else {
				require.NoError(t, err)
				assert.EqualValues(t, 600, p.GetAmountDisputed())
				assert.Equal(t, "pay_1", list.GetDisputes()[0].GetPayment())
				assert.Equal(t, "lost", d.GetStatus())
			}
			calls := led.calls
			p, err = s.GetPayment(authed(""), &gatewayv1.GetPaymentRequest{Id: uncaptured.ID})
			require.NoError(t, err, "a payment never captured reads without the ledger")
			assert.Zero(t, p.GetAmountDisputed())
			assert.Equal(t, calls, led.calls, "the ledger was not asked about an uncaptured payment")
			for _, m := range led.merchants {
				assert.Equal(t, "mer_1", m, "forwarded with the authenticated merchant")
			}
		})
	}
	_, err := New(Config{Store: st, Vault: merchantVault{}, Ledger: &disputeLedger{}, Now: time.Now, NewTicker: never}).Disputes().ListDisputes(authed(""), &gatewayv1.ListDisputesRequest{PageSize: 101})
	assert.Equal(t, "page_size_invalid", apierr.From(err).Code)
}
