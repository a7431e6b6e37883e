package service

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// Disputes is the merchant's DisputeService: the disputes live in the
// ledger, so every call authenticates the merchant's secret key (through
// vaultd) and forwards to ledgerd with the merchant's id. Disputes carry
// no card data.
type Disputes struct {
	gatewayv1.UnimplementedDisputeServiceServer
	s *Service
}

var _ gatewayv1.DisputeServiceServer = (*Disputes)(nil)

// Disputes returns the service's DisputeService.
func (s *Service) Disputes() *Disputes { return &Disputes{s: s} }

// errLedgerReadUnavailable: a read that needs the ledger fails closed.
var errLedgerReadUnavailable = apierr.New(apierr.KindUnavailable, "ledger_unavailable", "", "the ledger is unavailable: disputes and disputed amounts cannot be read; retry later")

// ledgerReadCtx bounds a read the merchant waits for (not detached: if the
// merchant hangs up, the read is abandoned).
func (s *Service) ledgerReadCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	return metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+s.cfg.LedgerToken)), cancel
}

// ledgerReadErr maps a failed ledger read: unreachable is 503
// ledger_unavailable; a typed refusal (not found, a bad page token) keeps
// its code, with the ledger's field names mapped to the gateway's; any
// other failure is logged and answered as unavailable (the ledger's
// internals are not the merchant's business).
func (s *Service) ledgerReadErr(op string, err error) error {
	if unavailable(err) {
		return errLedgerReadUnavailable
	}
	ae := apierr.From(err)
	switch ae.Kind {
	case apierr.KindInvalidArgument, apierr.KindNotFound:
		out := *ae
		if out.Field == "payment_id" {
			out.Field = "payment"
		}
		return &out
	}
	s.cfg.Logger.Error("ledger read failed", "op", op, "code", ae.Code)
	return errLedgerReadUnavailable
}

func disputeToPB(d *ledgerv1.Dispute) *gatewayv1.Dispute {
	return &gatewayv1.Dispute{Id: d.GetId(), Payment: d.GetPaymentId(), Amount: d.GetAmount(), Currency: d.GetCurrency(), Reason: d.GetReason(),
		Status: d.GetStatus(), Fee: d.GetFee(), CreatedAt: d.GetCreatedAt(), UpdatedAt: d.GetUpdatedAt()}
}

// ListDisputes lists the merchant's disputes, newest first.
func (d *Disputes) ListDisputes(ctx context.Context, req *gatewayv1.ListDisputesRequest) (*gatewayv1.ListDisputesResponse, error) {
	merchant, err := d.s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	if n := req.GetPageSize(); n < 0 || n > 100 {
		return nil, apierr.Invalid("page_size_invalid", "page_size", "page_size must be 1-100 (default 10)")
	}
	lctx, cancel := d.s.ledgerReadCtx(ctx)
	defer cancel()
	resp, err := d.s.cfg.Ledger.ListDisputes(lctx, &ledgerv1.ListDisputesRequest{MerchantId: merchant, PaymentId: req.GetPayment(),
		PageSize: req.GetPageSize(), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, d.s.ledgerReadErr("list disputes", err)
	}
	out := &gatewayv1.ListDisputesResponse{NextPageToken: resp.GetNextPageToken()}
	for _, x := range resp.GetDisputes() {
		out.Disputes = append(out.Disputes, disputeToPB(x))
	}
	return out, nil
}

// GetDispute reads one of the merchant's disputes (another merchant's is
// the same 404 as one that does not exist).
func (d *Disputes) GetDispute(ctx context.Context, req *gatewayv1.GetDisputeRequest) (*gatewayv1.Dispute, error) {
	merchant, err := d.s.merchant(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, apierr.Invalid(apierr.CodeFieldRequired, "id", "id (dp_…) is required")
	}
	lctx, cancel := d.s.ledgerReadCtx(ctx)
	defer cancel()
	resp, err := d.s.cfg.Ledger.GetDispute(lctx, &ledgerv1.GetDisputeRequest{Id: req.GetId(), MerchantId: merchant})
	if err != nil {
		return nil, d.s.ledgerReadErr("get dispute", err)
	}
	return disputeToPB(resp), nil
}

// withDisputed sets amount_disputed on payments read by a merchant. Only a
// captured payment can be disputed, so the ledger is asked about those
// alone: reading payments that never were captured works with the ledger
// down, and reading a captured one fails closed (503 ledger_unavailable)
// rather than answer a disputed amount it does not know.
func (s *Service) withDisputed(ctx context.Context, merchant string, ps ...*gatewayv1.Payment) error {
	var ids []string
	for _, p := range ps {
		if p.GetAmountCaptured() > 0 {
			ids = append(ids, p.GetId())
		}
	}
	if len(ids) == 0 {
		return nil
	}
	lctx, cancel := s.ledgerReadCtx(ctx)
	defer cancel()
	resp, err := s.cfg.Ledger.GetDisputedAmounts(lctx, &ledgerv1.GetDisputedAmountsRequest{MerchantId: merchant, PaymentIds: ids})
	if err != nil {
		if !unavailable(err) {
			s.cfg.Logger.Error("ledger refused the disputed amounts", "code", apierr.From(err).Code)
		}
		return errLedgerReadUnavailable
	}
	for _, p := range ps {
		p.AmountDisputed = resp.GetAmounts()[p.GetId()]
	}
	return nil
}
