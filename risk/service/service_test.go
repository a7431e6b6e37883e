package service_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
	"github.com/obolpay/obol/risk/engine"
	"github.com/obolpay/obol/risk/features"
	"github.com/obolpay/obol/risk/service"
)

const token = "rsk_test"

func newService(t *testing.T) *service.Service {
	t.Helper()
	e, err := engine.New(context.Background(), engine.Config{Features: features.NewMemory(), State: engine.NewMemoryState(100)})
	require.NoError(t, err)
	return service.New(e, token)
}

func authed() context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
}

func payment() *riskv1.Payment {
	return &riskv1.Payment{MerchantId: "mer_1", Amount: 1000, Currency: "USD", Bin: "424242", Fingerprint: "fp_1", CustomerIp: "203.0.113.9"}
}

// TestErrorsNameTheField: every refused call is a typed error with the
// field at fault; a valid one is decided.
func TestErrorsNameTheField(t *testing.T) {
	s := newService(t)
	with := func(f func(p *riskv1.Payment)) *riskv1.EvaluateRequest {
		p := payment()
		f(p)
		return &riskv1.EvaluateRequest{Payment: p}
	}
	tests := []struct {
		name  string
		ctx   context.Context
		call  func(ctx context.Context) error
		kind  apierr.Kind
		field string
	}{
		{"no token", context.Background(), func(ctx context.Context) error {
			_, err := s.Evaluate(ctx, &riskv1.EvaluateRequest{Payment: payment()})
			return err
		}, apierr.KindUnauthenticated, "authorization"},
		{"no payment", authed(), func(ctx context.Context) error { _, err := s.Evaluate(ctx, &riskv1.EvaluateRequest{}); return err }, apierr.KindInvalidArgument, "payment"},
		{"no merchant", authed(), func(ctx context.Context) error {
			_, err := s.DryRun(ctx, with(func(p *riskv1.Payment) { p.MerchantId = "" }))
			return err
		}, apierr.KindInvalidArgument, "payment.merchant_id"},
		{"zero amount", authed(), func(ctx context.Context) error {
			_, err := s.Evaluate(ctx, with(func(p *riskv1.Payment) { p.Amount = 0 }))
			return err
		}, apierr.KindInvalidArgument, "payment.amount"},
		{"unknown currency", authed(), func(ctx context.Context) error {
			_, err := s.Evaluate(ctx, with(func(p *riskv1.Payment) { p.Currency = "XYZ" }))
			return err
		}, apierr.KindInvalidArgument, "payment.currency"},
		{"a card number as BIN", authed(), func(ctx context.Context) error {
			_, err := s.Evaluate(ctx, with(func(p *riskv1.Payment) { p.Bin = "4242424242424242" }))
			return err
		}, apierr.KindInvalidArgument, "payment.bin"},
		{"unknown list", authed(), func(ctx context.Context) error {
			_, err := s.GetList(ctx, &riskv1.GetListRequest{List: "no_such_list"})
			return err
		}, apierr.KindInvalidArgument, "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := apierr.From(tt.call(tt.ctx))
			require.NotNil(t, e)
			assert.Equal(t, tt.kind, e.Kind)
			assert.Equal(t, tt.field, e.Field)
		})
	}
	d, err := s.Evaluate(authed(), &riskv1.EvaluateRequest{Payment: payment()})
	require.NoError(t, err)
	assert.NotEmpty(t, d.GetAction())
	assert.NotEmpty(t, d.GetRuleSetVersion())
}
