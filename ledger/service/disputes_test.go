package service_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/ledger/service"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// disputesService has three captured payments (two merchants), each
// charged back in one settlement import.
func disputesService(t *testing.T) (*service.Service, context.Context, *ledgerv1.SettlementReport) {
	t.Helper()
	svc, ctx := openService(t)
	csv := "acquirer_reference,amount,fee,currency,settled_date,type,reason\n"
	for _, p := range []struct{ id, merchant, ref string }{{"pay_a", "mer_1", "ref_a"}, {"pay_b", "mer_1", "ref_b"}, {"pay_c", "mer_2", "ref_c"}} {
		for _, ev := range []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED} {
			_, err := svc.RecordPayment(ctx, &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: p.id, MerchantId: p.merchant, Currency: "EUR", Amount: 1000,
				Acquirer: "simulator", AcquirerReference: p.ref})
			require.NoError(t, err)
		}
		csv += p.ref + ",-1000,1500,EUR,2026-11-20,chargeback,fraudulent\n"
	}
	csv += "ref_b,0,0,EUR,2026-11-21,dispute_review,\n"
	rep, err := svc.ImportSettlement(ctx, &ledgerv1.ImportSettlementRequest{Acquirer: "simulator", Csv: csv})
	require.NoError(t, err)
	require.EqualValues(t, 4, rep.GetMatched(), "%v", rep)
	return svc, ctx, rep
}

func TestDisputesRPCs(t *testing.T) {
	svc, ctx, rep := disputesService(t)
	idA := rep.GetResults()[0].GetDisputeId()
	require.NotEmpty(t, idA, "the import names the dispute")
	assert.Equal(t, idA, rep.GetResults()[0].GetDisputeId())

	d, err := svc.GetDispute(ctx, &ledgerv1.GetDisputeRequest{Id: idA, MerchantId: "mer_1"})
	require.NoError(t, err)
	assert.Equal(t, "pay_a", d.GetPaymentId())
	assert.Equal(t, "needs_response", d.GetStatus())
	assert.Equal(t, "fraudulent", d.GetReason())
	assert.EqualValues(t, 1000, d.GetAmount())
	assert.EqualValues(t, 1500, d.GetFee())
	assert.NotNil(t, d.GetCreatedAt())

	var got []string
	for tok, pages := "", 0; ; pages++ {
		require.Less(t, pages, 4)
		resp, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer_1", PageSize: 1, PageToken: tok})
		require.NoError(t, err)
		for _, d := range resp.GetDisputes() {
			got = append(got, d.GetPaymentId()+":"+d.GetStatus())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	assert.ElementsMatch(t, []string{"pay_a:needs_response", "pay_b:under_review"}, got, "mer_1's disputes, paged")
	resp, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer_1", PaymentId: "pay_b"})
	require.NoError(t, err)
	require.Len(t, resp.GetDisputes(), 1)
	assert.Equal(t, "under_review", resp.GetDisputes()[0].GetStatus())

	amounts, err := svc.GetDisputedAmounts(ctx, &ledgerv1.GetDisputedAmountsRequest{MerchantId: "mer_1", PaymentIds: []string{"pay_a", "pay_c", "pay_none"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"pay_a": 1000}, amounts.GetAmounts(), "another merchant's payment counts nothing")
}

func TestDisputesRPCsRefuse(t *testing.T) {
	svc, ctx, rep := disputesService(t)
	idC := rep.GetResults()[2].GetDisputeId()
	otherTok, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer_2", PageSize: 1})
	require.NoError(t, err)
	require.NotEmpty(t, otherTok.GetNextPageToken())
	many := make([]string, 101)
	for i := range many {
		many[i] = "pay_a"
	}
	tests := []struct {
		name        string
		call        func() error
		kind        apierr.Kind
		code, field string
	}{
		{"no token", func() error {
			_, err := svc.GetDispute(context.Background(), &ledgerv1.GetDisputeRequest{Id: idC})
			return err
		}, apierr.KindUnauthenticated, apierr.CodeUnauthenticated, "authorization"},
		{"another merchant's dispute", func() error {
			_, err := svc.GetDispute(ctx, &ledgerv1.GetDisputeRequest{Id: idC, MerchantId: "mer_1"})
			return err
		}, apierr.KindNotFound, "dispute_not_found", "id"},
		{"unknown dispute", func() error {
			_, err := svc.GetDispute(ctx, &ledgerv1.GetDisputeRequest{Id: "dp_000000000000000000000000", MerchantId: "mer_1"})
			return err
		}, apierr.KindNotFound, "dispute_not_found", "id"},
		{"malformed dispute id", func() error {
			_, err := svc.GetDispute(ctx, &ledgerv1.GetDisputeRequest{Id: "dp_x'--", MerchantId: "mer_1"})
			return err
		}, apierr.KindNotFound, "dispute_not_found", "id"},
		{"no dispute id", func() error {
			_, err := svc.GetDispute(ctx, &ledgerv1.GetDisputeRequest{MerchantId: "mer_1"})
			return err
		}, apierr.KindInvalidArgument, apierr.CodeFieldRequired, "id"},
		{"bad merchant id", func() error {
			_, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer 1"})
			return err
		}, apierr.KindInvalidArgument, "merchant_id_invalid", "merchant_id"},
		{"page size too large", func() error {
			_, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer_1", PageSize: 101})
			return err
		}, apierr.KindInvalidArgument, "page_size_invalid", "page_size"},
		{"forged page token", func() error {
			_, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer_1", PageToken: "dnope"})
			return err
		}, apierr.KindInvalidArgument, "page_token_invalid", "page_token"},
		{"another merchant's page token", func() error {
			_, err := svc.ListDisputes(ctx, &ledgerv1.ListDisputesRequest{MerchantId: "mer_1", PageToken: otherTok.GetNextPageToken()})
			return err
		}, apierr.KindInvalidArgument, "page_token_invalid", "page_token"},
		{"amounts without a merchant", func() error {
			_, err := svc.GetDisputedAmounts(ctx, &ledgerv1.GetDisputedAmountsRequest{PaymentIds: []string{"pay_a"}})
			return err
		}, apierr.KindInvalidArgument, apierr.CodeFieldRequired, "merchant_id"},
		{"too many payment ids", func() error {
			_, err := svc.GetDisputedAmounts(ctx, &ledgerv1.GetDisputedAmountsRequest{MerchantId: "mer_1", PaymentIds: many})
			return err
		}, apierr.KindInvalidArgument, "too_many_payment_ids", "payment_ids"},
		{"bad payment id", func() error {
			_, err := svc.GetDisputedAmounts(ctx, &ledgerv1.GetDisputedAmountsRequest{MerchantId: "mer_1", PaymentIds: []string{"pay_a", "pay b"}})
			return err
		}, apierr.KindInvalidArgument, "payment_id_invalid", "payment_ids[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ae *apierr.Error
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tt.kind, ae.Kind)
			assert.Equal(t, tt.code, ae.Code)
			assert.Equal(t, tt.field, ae.Field)
		})
	}
}
