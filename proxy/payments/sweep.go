package payments

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/periodic"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// SweepResult counts what one sweep did.
type SweepResult struct {
	Delivered  int // outbox events the ledger took
	Pending    int // outbox events still waiting
	Recovered  int // processing payments reversed and failed
	Unresolved int // processing payments that must wait for the next sweep
}

// Run sweeps every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, func(ctx context.Context) {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("sweep incomplete", "err", err)
		}
	})
}

// Sweep delivers queued ledger events and resolves payments left in the
// processing state for longer than Config.ProcessingTimeout: their
// authorization is reversed at the acquirer (idempotently: the acquirer
// may or may not have approved it), the ledger hold is released, and the
// payment becomes failed with processing_abandoned.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	return s.SweepOlderThan(ctx, s.cfg.ProcessingTimeout)
}

// SweepOlderThan sweeps with another processing timeout (tests, operators).
func (s *Service) SweepOlderThan(ctx context.Context, timeout time.Duration) (SweepResult, error) {
	var res SweepResult
	entries, err := s.cfg.Store.Outbox(ctx, 500)
	if err != nil {
		return res, errStoreUnavailable
	}
	for _, e := range entries {
		req := &ledgerv1.RecordPaymentRequest{}
		if err := protojson.Unmarshal([]byte(e.Request), req); err != nil {
			return res, apierr.From(err)
		}
		lctx, cancel := s.ledgerCtx(ctx)
		r, err := s.cfg.Ledger.RecordPayment(lctx, req)
		cancel()
		if err != nil && unavailable(err) {
			_ = s.cfg.Store.OutboxAttempt(ctx, e.ID)
			res.Pending++
			continue
		}
		if err != nil {
			// A refusal will not change on retry: keep it for an operator.
			s.cfg.Logger.Error("ledger refused a queued event; reconcile by payment id", "payment", e.PaymentID, "event", req.GetEvent().String(), "err", apierr.From(err).Code)
			_ = s.cfg.Store.OutboxAttempt(ctx, e.ID)
			res.Pending++
			continue
		}
		if req.GetEvent() == ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED {
			if err := s.cfg.Store.SetFee(ctx, e.PaymentID, r.GetFee()); err != nil {
				return res, errStoreUnavailable
			}
		}
		if err := s.cfg.Store.OutboxDone(ctx, e.ID); err != nil {
			return res, errStoreUnavailable
		}
		res.Delivered++
	}

	stale, err := s.cfg.Store.Processing(ctx, s.cfg.Now().Add(-timeout), 100)
	if err != nil {
		return res, errStoreUnavailable
	}
	for _, p := range stale {
		if s.recover(ctx, p) {
			res.Recovered++
		} else {
			res.Unresolved++
		}
	}
	return res, nil
}

func (s *Service) recover(ctx context.Context, p *Payment) bool {
	defer s.lock(p.ID)()
	p, err := s.cfg.Store.Get(ctx, p.MerchantID, p.ID)
	if err != nil || p.Status != StatusProcessing {
		return err == nil
	}
	conn := s.cfg.Connectors[p.Acquirer]
	if conn == nil {
		return false
	}
	// The ledger only ever holds a processing payment (its capture is
	// recorded after the payment is final): release the hold, then reverse.
	// Both are idempotent, so a sweep that stops half way is redone.
	if _, err := s.record(ctx, ledgerv1.PaymentEvent_PAYMENT_EVENT_CANCELED, p, 0, ""); err != nil && status.Code(err) != codes.NotFound {
		s.cfg.Logger.Warn("hold of an abandoned payment not released; next sweep retries", "payment", p.ID, "err", apierr.From(err).Code)
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	err = conn.Reverse(rctx, p.ID)
	cancel()
	if err != nil {
		s.cfg.Logger.Warn("reversal of an abandoned payment failed; next sweep retries", "payment", p.ID, "err", err)
		return false
	}
	p.Status, p.DeclineCode, p.AmountCaptured = StatusFailed, CodeProcessingAbandoned, 0
	p.UpdatedAt = s.cfg.Now().UTC()
	if err := s.cfg.Store.Update(ctx, p); err != nil {
		return false
	}
	s.cfg.Logger.Warn("abandoned payment reversed", "payment", p.ID)
	return true
}
