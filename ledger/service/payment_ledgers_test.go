package service_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/service"
	"github.com/obolpay/obol/ledger/store/sqlite"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// openService is the service on a fresh SQLite ledger, and a context
// carrying its token.
func openService(t *testing.T) (*service.Service, context.Context) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	svc := service.New(book.New(st, nil), "tok")
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok"))
	return svc, ctx
}

func newService(t *testing.T) (*service.Service, context.Context) {
	t.Helper()
	svc, ctx := openService(t)
	for _, id := range []string{"pay_a", "pay_b", "pay_c"} {
		_, err := svc.RecordPayment(ctx, &ledgerv1.RecordPaymentRequest{Event: ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, PaymentId: id, MerchantId: "mer_1", Currency: "EUR", Amount: 100})
		require.NoError(t, err)
	}
	return svc, ctx
}

func TestListPaymentLedgers(t *testing.T) {
	svc, ctx := newService(t)
	// Paged, in payment id order.
	var ids []string
	for tok, pages := "", 0; ; pages++ {
		require.Less(t, pages, 5)
		resp, err := svc.ListPaymentLedgers(ctx, &ledgerv1.ListPaymentLedgersRequest{PageSize: 2, PageToken: tok})
		require.NoError(t, err)
		for _, p := range resp.GetPayments() {
			ids = append(ids, p.GetPaymentId())
			require.Equal(t, "pending", p.GetHoldStatus())
			require.EqualValues(t, 100, p.GetAuthorized())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	require.Equal(t, []string{"pay_a", "pay_b", "pay_c"}, ids)
	// By id: unknown ones are left out.
	resp, err := svc.ListPaymentLedgers(ctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: []string{"pay_c", "pay_zz"}})
	require.NoError(t, err)
	require.Len(t, resp.GetPayments(), 1)
	require.Equal(t, "pay_c", resp.GetPayments()[0].GetPaymentId())
}

func TestListPaymentLedgersRefuses(t *testing.T) {
	svc, ctx := newService(t)
	many := make([]string, 1001)
	for i := range many {
		many[i] = "p"
	}
	tests := []struct {
		name        string
		ctx         context.Context
		req         *ledgerv1.ListPaymentLedgersRequest
		kind        apierr.Kind
		code, field string
	}{
		{"no token", context.Background(), &ledgerv1.ListPaymentLedgersRequest{}, apierr.KindUnauthenticated, apierr.CodeUnauthenticated, "authorization"},
		{"forged page token", ctx, &ledgerv1.ListPaymentLedgersRequest{PageToken: "s12"}, apierr.KindInvalidArgument, "page_token_invalid", "page_token"},
		{"ids and a page token", ctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: []string{"pay_a"}, PageToken: "pcGF5X2E"}, apierr.KindInvalidArgument, "page_token_invalid", "page_token"},
		{"too many ids", ctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: many}, apierr.KindInvalidArgument, "too_many_payment_ids", "payment_ids"},
		{"empty id", ctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: []string{"pay_a", ""}}, apierr.KindInvalidArgument, "payment_id_invalid", "payment_ids[1]"},
		{"long id", ctx, &ledgerv1.ListPaymentLedgersRequest{PaymentIds: []string{strings.Repeat("x", 65)}}, apierr.KindInvalidArgument, "payment_id_invalid", "payment_ids[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.ListPaymentLedgers(tt.ctx, tt.req)
			var ae *apierr.Error
			require.ErrorAs(t, err, &ae)
			require.Equal(t, tt.kind, ae.Kind)
			require.Equal(t, tt.code, ae.Code)
			require.Equal(t, tt.field, ae.Field)
		})
	}
}
