package service

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// fakeLedger answers RecordPayment by payment id prefix (a unit-test
// double for the ledger's refusals; the integration tests use ledgerd).
type fakeLedger struct {
	ledgerv1.LedgerServiceClient
	mu     sync.Mutex
	calls  map[string]int
	refuse map[string]codes.Code // payment id prefix -> code
}

func (f *fakeLedger) RecordPayment(_ context.Context, req *ledgerv1.RecordPaymentRequest, _ ...grpc.CallOption) (*ledgerv1.RecordPaymentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[req.GetPaymentId()]++
	for prefix, c := range f.refuse {
		if strings.HasPrefix(req.GetPaymentId(), prefix) {
			return nil, status.Error(c, "refused")
		}
	}
	return &ledgerv1.RecordPaymentResponse{}, nil
}

func (f *fakeLedger) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func queue(t *testing.T, st TestStore, id string, at time.Time) {
	t.Helper()
	e := event(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, &Payment{ID: id, MerchantID: "mer_1", Currency: "USD"}, 100, "")
	require.NoError(t, st.AddOutbox(context.Background(), e.ID, e.PaymentID, e.Request, at))
}

// TestOutboxDeadEntriesDoNotBlock: 501 events the ledger refuses for good
// sit at the head of the outbox, older than a good one. Each becomes dead
// after one attempt (with its error code, counted in the metric, logged
// once), dead entries are never read again, and the good event is
// delivered by the next sweep instead of waiting behind them forever. An
// operator's retry makes them pending again.
func TestOutboxDeadEntriesDoNotBlock(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := newClock()
			led := &fakeLedger{calls: map[string]int{}, refuse: map[string]codes.Code{"pay_bad": codes.FailedPrecondition}}
			var logs bytes.Buffer
			s := New(Config{Store: st, Ledger: led, Now: clk.Now, NewTicker: never, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			t0 := clk.Now()
			for i := range 501 {
				queue(t, st, fmt.Sprintf("pay_bad%03d", i), t0.Add(-time.Hour))
			}
			queue(t, st, "pay_good", t0)
			ctx := context.Background()
			var dead, delivered int
			for range 3 {
				res, err := s.SweepOlderThan(ctx, time.Hour)
				require.NoError(t, err)
				dead, delivered = dead+res.Dead, delivered+res.Delivered
				clk.Advance(time.Minute)
			}
			assert.Equal(t, 501, dead, "dead entries")
			assert.Equal(t, 1, delivered, "the good event was delivered")
			assert.Equal(t, 1, led.count("pay_good"))
			assert.Equal(t, 1, led.count("pay_bad000"), "a dead entry is attempted once")
			assert.Equal(t, 501, strings.Count(logs.String(), "refused a queued event for good"), "one log line per dead entry")
			assert.InDelta(t, 501, counter(t, s, "obol_gateway_ledger_outbox_dead_total"), 0)
			list, err := st.OutboxList(ctx, OutboxDead, 1000)
			require.NoError(t, err)
			require.Len(t, list, 501)
			assert.Equal(t, OutboxDead, list[0].State)
			assert.NotEmpty(t, list[0].LastError)
			// The operator retries them once the ledger takes them.
			delete(led.refuse, "pay_bad")
			n, err := st.OutboxRetry(ctx, "", clk.Now())
			require.NoError(t, err)
			assert.EqualValues(t, 501, n)
			for range 2 {
				_, err := s.SweepOlderThan(ctx, time.Hour)
				require.NoError(t, err)
			}
			left, err := st.OutboxList(ctx, "", 1000)
			require.NoError(t, err)
			assert.Empty(t, left)
			assert.Equal(t, 2, led.count("pay_bad000"))
		})
	}
}

// counter sums a counter of the service's metrics.
func counter(t *testing.T, s *Service, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// TestOutboxBackoff: an event that fails for an outage waits longer after
// each failure (5 s, 10 s, …), per entry; one failing with an internal
// error is dead after outboxMaxAttempts.
func TestOutboxBackoff(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := newClock()
			led := &fakeLedger{calls: map[string]int{}, refuse: map[string]codes.Code{"pay_down": codes.Unavailable, "pay_internal": codes.Internal}}
			s := New(Config{Store: st, Ledger: led, Now: clk.Now, NewTicker: never, Logger: slog.New(slog.DiscardHandler)})
			ctx := context.Background()
			queue(t, st, "pay_down", clk.Now())
			sweep := func() {
				t.Helper()
				_, err := s.SweepOlderThan(ctx, time.Hour)
				require.NoError(t, err)
			}
			steps := []struct {
				name    string
				advance time.Duration
				calls   int
			}{
				{"first attempt", 0, 1},
				{"the first failure is retried by the next sweep", 0, 2},
				{"then it waits 5 s", 4 * time.Second, 2},
				{"5 s later", time.Second, 3},
				{"then 10 s", 9 * time.Second, 3},
				{"10 s later", time.Second, 4},
			}
			for _, st := range steps {
				clk.Advance(st.advance)
				sweep()
				assert.Equal(t, st.calls, led.count("pay_down"), st.name)
			}
			queue(t, st, "pay_internal", clk.Now())
			for range outboxMaxAttempts + 3 {
				sweep()
				clk.Advance(outboxMaxBackoff)
			}
			assert.Equal(t, outboxMaxAttempts, led.count("pay_internal"), "attempts before an internal error is dead")
			dead, err := st.OutboxList(ctx, OutboxDead, 10)
			require.NoError(t, err)
			require.Len(t, dead, 1)
			assert.Equal(t, "pay_internal", dead[0].PaymentID)
		})
	}
}

// orderLedger is a ledger double that, like ledgerd, refuses a refund for
// good (FailedPrecondition payment_not_captured) before the payment's
// capture was recorded, and is unavailable while down.
type orderLedger struct {
	ledgerv1.LedgerServiceClient
	mu       sync.Mutex
	down     bool
	captured map[string]bool
	order    []string
}

func (f *orderLedger) RecordPayment(_ context.Context, req *ledgerv1.RecordPaymentRequest, _ ...grpc.CallOption) (*ledgerv1.RecordPaymentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, status.Error(codes.Unavailable, "ledger down")
	}
	switch req.GetEvent() {
	case ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED:
		f.captured[req.GetPaymentId()] = true
	case ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED:
		if !f.captured[req.GetPaymentId()] {
			return nil, status.Error(codes.FailedPrecondition, "payment_not_captured")
		}
	}
	f.order = append(f.order, req.GetEvent().String())
	return &ledgerv1.RecordPaymentResponse{}, nil
}

// TestOutboxDeliversInOrder: a capture waits in the outbox (the ledger was
// down, so it backs off), then a refund of the same payment is queued and
// delivered inline once the ledger is back. The refund must wait behind
// the capture, never reach the ledger first (it would be refused for good
// and lost from the ledger: the drill suite's ledgerd-stop found it); the
// sweeper then delivers both, in order, and nothing is dead.
func TestOutboxDeliversInOrder(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := newClock()
			led := &orderLedger{down: true, captured: map[string]bool{}}
			s := New(Config{Store: st, Ledger: led, Now: clk.Now, NewTicker: never})
			ctx := context.Background()
			p := &Payment{ID: "pay_order", MerchantID: "mer_1", Currency: "USD"}
			capture := event(ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED, p, 1000, "")
			require.NoError(t, st.AddOutbox(ctx, capture.ID, capture.PaymentID, capture.Request, clk.Now()))
			s.deliverNow(ctx, p, []OutboxEntry{capture}) // fails: down
			res, err := s.SweepOlderThan(ctx, time.Hour)
			require.NoError(t, err)
			require.Zero(t, res.Delivered)
			// The capture now backs off; the ledger comes back and a refund
			// is made and delivered inline.
			led.mu.Lock()
			led.down = false
			led.mu.Unlock()
			clk.Advance(time.Second)
			refund := event(ledgerv1.PaymentEvent_PAYMENT_EVENT_REFUNDED, p, 400, "re_1")
			require.NoError(t, st.AddOutbox(ctx, refund.ID, refund.PaymentID, refund.Request, clk.Now()))
			s.deliverNow(ctx, p, []OutboxEntry{refund})
			assert.Empty(t, led.order, "the refund waits behind its payment's capture")
			var dead, delivered int
			for range 4 {
				clk.Advance(time.Minute)
				res, err := s.SweepOlderThan(ctx, time.Hour)
				require.NoError(t, err)
				dead, delivered = dead+res.Dead, delivered+res.Delivered
			}
			assert.Zero(t, dead)
			assert.Equal(t, 2, delivered)
			assert.Equal(t, []string{"PAYMENT_EVENT_CAPTURED", "PAYMENT_EVENT_REFUNDED"}, led.order)
			left, err := st.OutboxList(ctx, "", 10)
			require.NoError(t, err)
			assert.Empty(t, left)
		})
	}
}
