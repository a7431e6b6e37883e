package service

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/periodic"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// SweepResult counts what one sweep did.
type SweepResult struct {
	Delivered   int // outbox events the ledger took
	Pending     int // outbox events still waiting (backing off)
	Dead        int // outbox events the ledger refused for good in this sweep
	Recovered   int // processing payments reversed and failed
	Unresolved  int // processing payments or operations that must wait for the next sweep
	Resumed     int // abandoned captures, cancels and refunds completed
	Compensated int // final payments whose owed reversal or hold release was done
}

// Outbox delivery backoff: an entry that failed n times waits
// outboxBackoff·2ⁿ (at most outboxMaxBackoff); after outboxMaxAttempts
// failures that were not outages (e.g. internal errors) it is dead.
const (
	outboxBackoff     = 5 * time.Second
	outboxMaxBackoff  = 10 * time.Minute
	outboxMaxAttempts = 20
)

// compensationDelay is how long the sweeper leaves a final payment's owed
// compensation to its request before doing it itself.
const compensationDelay = 30 * time.Second

type metrics struct {
	dead      *prometheus.CounterVec
	delivered prometheus.Counter
	retried   prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_gateway_ledger_outbox_dead_total",
			Help: "Ledger events the ledger refused for good (now dead in the outbox; obol gateway outbox list), by gRPC code."}, []string{"code"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "obol_gateway_ledger_outbox_delivered_total", Help: "Ledger events delivered from the outbox."}),
		retried:   prometheus.NewCounter(prometheus.CounterOpts{Name: "obol_gateway_ledger_outbox_failures_total", Help: "Failed deliveries from the outbox that will be retried (with backoff)."}),
	}
}

// Collectors are the service's Prometheus metrics.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.dead, s.metrics.delivered, s.metrics.retried}
}

// Run sweeps every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	periodic.Run(ctx, interval, func(ctx context.Context) {
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("sweep incomplete", "err", err)
		}
	})
}

// Sweep delivers queued ledger events, completes owed compensations,
// resumes abandoned captures, cancels and refunds, and resolves payments
// left in the processing state for longer than Config.ProcessingTimeout:
// their authorization is reversed at the acquirer (idempotently: the
// acquirer may or may not have approved it), the ledger hold is released,
// and the payment becomes failed with processing_abandoned.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	return s.SweepOlderThan(ctx, s.cfg.ProcessingTimeout)
}

// permanent reports whether a ledger refusal will not change on retry.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists, codes.OutOfRange, codes.Unimplemented:
		return true
	}
	return false
}

// deliver sends one outbox entry to the ledger: delivered entries are
// removed (the capture's fee stored), outages back off, and a permanent
// refusal makes the entry dead, logged once and counted.
func (s *Service) deliver(ctx context.Context, e OutboxEntry) (fee int64, ok bool) {
	fee, out := s.deliverEntry(ctx, e)
	return fee, out == delivered
}

type delivery int

const (
	delivered delivery = iota
	backingOff
	deadLettered
)

func (s *Service) deliverEntry(ctx context.Context, e OutboxEntry) (int64, delivery) {
	req := &ledgerv1.RecordPaymentRequest{}
	if err := protojson.Unmarshal([]byte(e.Request), req); err != nil {
		s.dead(ctx, e, req, "unreadable_request", "InvalidArgument")
		return 0, deadLettered
	}
	// A payment's events go in order: while an older one waits (backing off
	// or dead), this one waits behind it, without an attempt counted.
	// (An entry just queued knows it from its own transaction: First.)
	var older *OutboxEntry
	if !e.First {
		var err error
		if older, err = s.cfg.Store.OlderOutbox(ctx, e.PaymentID, e.ID); err != nil {
			return 0, backingOff
		}
	}
	if older != nil {
		at := older.NextAttemptAt
		if older.State != "pending" {
			at = s.cfg.Now().Add(outboxMaxBackoff) // behind a dead event: an operator retries it first
		}
		if now := s.cfg.Now(); at.Before(now) {
			at = now
		}
		if derr := s.cfg.Store.OutboxDefer(ctx, e.ID, at); derr != nil {
			s.cfg.Logger.Warn("outbox entry not deferred", "payment", e.PaymentID, "err", derr)
		}
		return 0, backingOff
	}
	lctx, cancel := s.ledgerCtx(ctx)
	r, err := s.cfg.Ledger.RecordPayment(lctx, req)
	cancel()
	if err != nil {
		code := apierr.From(err).Code
		if permanent(err) || (!unavailable(err) && e.Attempts+1 >= outboxMaxAttempts) {
			s.dead(ctx, e, req, code, status.Code(err).String())
			return 0, deadLettered
		}
		// The first failure (usually the inline delivery) is retried by
		// the next sweep; then the wait doubles.
		var wait time.Duration
		if e.Attempts > 0 {
			wait = min(outboxBackoff<<min(e.Attempts-1, 10), outboxMaxBackoff)
		}
		s.metrics.retried.Inc()
		if e.Attempts == 0 {
			s.cfg.Logger.Warn("ledger event waits in the outbox; the sweeper retries it with backoff", "payment", e.PaymentID, "event", req.GetEvent().String(), "err", code)
		}
		if aerr := s.cfg.Store.OutboxAttempt(ctx, e.ID, code, s.cfg.Now().Add(wait)); aerr != nil {
			s.cfg.Logger.Warn("outbox attempt not counted", "payment", e.PaymentID, "err", aerr)
		}
		return 0, backingOff
	}
	var fee int64
	if req.GetEvent() == ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED {
		// The fee and the entry's removal commit together: on a failure
		// the entry stays, and a redelivery replays and stores the fee.
		fee = r.GetFee()
		if err := s.cfg.Store.OutboxDoneFee(ctx, e.ID, e.PaymentID, fee); err != nil {
			return fee, backingOff
		}
	} else if err := s.cfg.Store.OutboxDone(ctx, e.ID); err != nil {
		return fee, backingOff
	}
	s.metrics.delivered.Inc()
	return fee, delivered
}

func (s *Service) dead(ctx context.Context, e OutboxEntry, req *ledgerv1.RecordPaymentRequest, code, grpcCode string) {
	if err := s.cfg.Store.OutboxDeadLetter(ctx, e.ID, code); err != nil {
		s.cfg.Logger.Warn("outbox entry not marked dead", "payment", e.PaymentID, "err", err)
		return
	}
	s.metrics.dead.WithLabelValues(grpcCode).Inc()
	s.cfg.Logger.Error("the ledger refused a queued event for good; it is dead in the outbox (obol gateway outbox list|retry)",
		"payment", e.PaymentID, "event", req.GetEvent().String(), "outbox_id", e.ID, "err", code)
}

// SweepOlderThan sweeps with another processing timeout (tests, operators).
func (s *Service) SweepOlderThan(ctx context.Context, timeout time.Duration) (SweepResult, error) {
	var res SweepResult
	now := s.cfg.Now()
	entries, err := s.cfg.Store.Outbox(ctx, now, 500)
	if err != nil {
		return res, errStoreUnavailable
	}
	for _, e := range entries {
		switch _, out := s.deliverEntry(ctx, e); out {
		case delivered:
			res.Delivered++
		case deadLettered:
			res.Dead++
		default:
			res.Pending++
		}
	}

	ops, err := s.cfg.Store.StaleOperations(ctx, now.Add(-timeout), 100)
	if err != nil {
		return res, errStoreUnavailable
	}
	for _, op := range ops {
		if s.resumeOperation(ctx, op) {
			res.Resumed++
		} else {
			res.Unresolved++
		}
	}

	stale, err := s.cfg.Store.Processing(ctx, now.Add(-timeout), 100)
	if err != nil {
		return res, errStoreUnavailable
	}
	for _, p := range stale {
		if s.recover(ctx, p, now.Add(-timeout)) {
			res.Recovered++
		} else {
			res.Unresolved++
		}
	}

	owing, err := s.cfg.Store.Compensating(ctx, now.Add(-min(timeout, compensationDelay)), 100)
	if err != nil {
		return res, errStoreUnavailable
	}
	for _, p := range owing {
		if s.compensate(ctx, s.cfg.Connectors[p.Acquirer], p) {
			res.Compensated++
		}
	}
	return res, nil
}

// resumeOperation completes a capture, cancel or refund whose request died
// or timed out, with the same acquirer idempotency key (the acquirer acts
// at most once) and the same ledger event id. It claims the operation
// first (compare-and-set), so a concurrent retry and the sweeper never
// both act on it.
func (s *Service) resumeOperation(ctx context.Context, op *Operation) bool {
	defer s.lock(op.PaymentID)()
	s.inflight.Add(1)
	defer s.inflight.Done()
	p, err := s.cfg.Store.Get(ctx, op.MerchantID, op.PaymentID)
	if err != nil {
		return false
	}
	conn := s.cfg.Connectors[p.Acquirer]
	if conn == nil {
		return false
	}
	if err := s.cfg.Store.TouchOperation(ctx, op, s.cfg.Now()); err != nil {
		return false
	}
	if _, err := s.runOperation(ctx, conn, p, op); err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Code == "acquirer_refused" {
			s.cfg.Logger.Warn("abandoned operation refused by the acquirer; failed", "payment", p.ID, "operation", op.Kind)
			return true
		}
		s.cfg.Logger.Warn("abandoned operation not completed; next sweep retries", "payment", p.ID, "operation", op.Kind, "err", apierr.From(err).Code)
		return false
	}
	s.cfg.Logger.Warn("abandoned operation completed", "payment", p.ID, "operation", op.Kind, "id", op.ID)
	return true
}

// recover abandons a payment left processing: it becomes failed with
// processing_abandoned and owes a reversal and a hold release, in one
// compare-and-set write (a retry resuming it at the same time either
// claimed it first, and this sweep skips it, or finds it failed), then
// the compensation runs. A payment touched since cutoff (a retry, maybe in
// another process, claimed its resumption after the sweep listed it) is
// left alone: the write is a compare-and-set on the version re-read here.
func (s *Service) recover(ctx context.Context, p *Payment, cutoff time.Time) bool {
	defer s.lock(p.ID)()
	p, err := s.cfg.Store.Get(ctx, p.MerchantID, p.ID)
	if err != nil || p.Status != StatusProcessing {
		return err == nil
	}
	if !p.UpdatedAt.Before(cutoff) {
		return true // being resumed: not abandoned
	}
	conn := s.cfg.Connectors[p.Acquirer]
	if conn == nil {
		return false
	}
	p.Status, p.DeclineCode, p.AmountCaptured = StatusFailed, CodeProcessingAbandoned, 0
	p.Compensation = CompReverse + "," + CompRelease
	p.UpdatedAt = s.cfg.Now().UTC()
	// The same compare-and-set as Update, with the merchant's
	// payment.failed in the same transaction.
	if err := s.cfg.Store.Commit(ctx, p, merchantEntries(paymentEvents(p, p.Version+1, false)...), s.cfg.Now()); err != nil {
		return false
	}
	if !s.compensate(ctx, conn, p) {
		s.cfg.Logger.Warn("abandoned payment failed; its reversal or hold release waits for the next sweep", "payment", p.ID)
		return true
	}
	s.cfg.Logger.Warn("abandoned payment reversed", "payment", p.ID)
	return true
}
