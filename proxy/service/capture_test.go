package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/proxy/connector"
)

// captureLedger is a ledger double for the capture's ledger-first call:
// it records a capture once per payment (a replay answers the first
// recording's fee, as ledgerd does) and can fail its next call either
// before recording (refuse) or after (lose: the answer is lost once the
// capture is recorded). The integration tests (proxy/gatewayd
// TestCaptureLedgerFirst) use ledgerd itself.
type captureLedger struct {
	ledgerv1.LedgerServiceClient
	mu       sync.Mutex
	fee      int64
	recorded map[string]int64 // payment id -> fee of its capture
	calls    int
	refuse   codes.Code // every RecordPayment fails before recording
	lose     codes.Code // the next RecordPayment records, then fails
	down     bool       // ListPaymentLedgers fails
}

func (l *captureLedger) RecordPayment(_ context.Context, req *ledgerv1.RecordPaymentRequest, _ ...grpc.CallOption) (*ledgerv1.RecordPaymentResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if c := l.refuse; c != codes.OK {
		return nil, status.Error(c, "refused by the test")
	}
	if req.GetEvent() != ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED {
		return &ledgerv1.RecordPaymentResponse{}, nil
	}
	fee, ok := l.recorded[req.GetPaymentId()]
	if !ok {
		fee = l.fee
		l.recorded[req.GetPaymentId()] = fee
	}
	if c := l.lose; c != codes.OK {
		l.lose = codes.OK
		return nil, status.Error(c, "answer lost by the test")
	}
	return &ledgerv1.RecordPaymentResponse{Fee: fee}, nil
}

func (l *captureLedger) ListPaymentLedgers(_ context.Context, req *ledgerv1.ListPaymentLedgersRequest, _ ...grpc.CallOption) (*ledgerv1.ListPaymentLedgersResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil, status.Error(codes.Unavailable, "down")
	}
	out := &ledgerv1.ListPaymentLedgersResponse{}
	for _, id := range req.GetPaymentIds() {
		if fee, ok := l.recorded[id]; ok {
			out.Payments = append(out.Payments, &ledgerv1.PaymentLedger{PaymentId: id, Captured: 2500, Fee: fee, HoldStatus: "posted"})
		}
	}
	return out, nil
}

func (l *captureLedger) captures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recorded)
}

// captureAcquirer is an acquirer double whose Capture answers err.
type captureAcquirer struct {
	connector.Connector
	mu       sync.Mutex
	err      error
	captures int
}

func (a *captureAcquirer) Capture(context.Context, string, int64, string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.captures++
	return a.err
}

// TestCaptureLedgerFirstFailures drives a capture operation left
// processing (as a crash leaves it) through the sweeper's resumption with
// the ledger's failures the integration tests cannot inject: an answer
// lost after the ledger recorded the capture, a permanent refusal, and an
// acquirer refusal while the ledger cannot be asked. Money is counted at
// the acquirer double (calls), the ledger double (captures recorded) and
// the store (status, fee, outbox).
func TestCaptureLedgerFirstFailures(t *testing.T) {
	refused := errors.New("already_captured")
	for _, tc := range []struct {
		name string
		// set up the doubles before the first sweep
		arrange    func(l *captureLedger, a *captureAcquirer)
		wantStatus string
		wantOp     string
		wantQueued int
		wantFee    int64
		// after: what a second sweep, with every double healthy, leaves
		afterStatus string
		afterQueued int
		afterDead   int
		afterFee    int64
		// captures recorded at the ledger, calls at the acquirer
		captures, acquirerCalls int
	}{
		{
			name:       "the ledger takes it: no outbox row",
			arrange:    func(*captureLedger, *captureAcquirer) {},
			wantStatus: StatusCaptured, wantOp: OpSucceeded, wantFee: 103,
			afterStatus: StatusCaptured, afterFee: 103, captures: 1, acquirerCalls: 1,
		},
		{
			name:       "the answer is lost after the ledger recorded: queued, then replayed with the first fee",
			arrange:    func(l *captureLedger, _ *captureAcquirer) { l.lose = codes.DeadlineExceeded },
			wantStatus: StatusCaptured, wantOp: OpSucceeded, wantQueued: 1,
			afterStatus: StatusCaptured, afterFee: 103, captures: 1, acquirerCalls: 1,
		},
		{
			name:       "the ledger refuses for good: the capture stands, its event dead in the outbox",
			arrange:    func(l *captureLedger, _ *captureAcquirer) { l.refuse = codes.FailedPrecondition },
			wantStatus: StatusCaptured, wantOp: OpSucceeded, wantQueued: 1,
			afterStatus: StatusCaptured, afterDead: 1, captures: 0, acquirerCalls: 1,
		},
		{
			name: "the acquirer refuses and the ledger cannot be asked: left in flight, then failed",
			arrange: func(l *captureLedger, a *captureAcquirer) {
				l.down = true
				a.err = refused
			},
			wantStatus: StatusAuthorized, wantOp: OpProcessing,
			afterStatus: StatusAuthorized, captures: 0, acquirerCalls: 2,
		},
	} {
		for backend, open := range backends(t) {
			t.Run(backend+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				st := open(t)
				clk := newClock()
				l := &captureLedger{fee: 103, recorded: map[string]int64{}}
				a := &captureAcquirer{}
				s := New(Config{Store: st, Now: clk.Now, NewTicker: never, Ledger: l, Connectors: map[string]connector.Connector{"simulator": a},
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				p := &Payment{ID: "pay_1", MerchantID: "mer_1", Status: StatusAuthorized, Amount: 2500, Currency: "USD", Token: "tok_1",
					Acquirer: "simulator", AcquirerReference: "auth_1", CreatedAt: clk.Now(), UpdatedAt: clk.Now(), Version: 1}
				require.NoError(t, st.Insert(ctx, p))
				op := &Operation{ID: "cap_1", PaymentID: p.ID, MerchantID: p.MerchantID, Kind: OpCapture, Amount: 2500, State: OpProcessing,
					CreatedAt: clk.Now(), UpdatedAt: clk.Now()}
				require.NoError(t, st.StartOperation(ctx, p, op))
				clk.Advance(time.Minute)
				tc.arrange(l, a)

				_, err := s.SweepOlderThan(ctx, time.Second)
				require.NoError(t, err)
				got, err := st.Get(ctx, "mer_1", "pay_1")
				require.NoError(t, err)
				assert.Equal(t, tc.wantStatus, got.Status)
				assert.Equal(t, tc.wantFee, got.Fee)
				gotOp, err := st.Operation(ctx, "cap_1")
				require.NoError(t, err)
				assert.Equal(t, tc.wantOp, gotOp.State)
				queued, err := st.OutboxList(ctx, OutboxPending, 10)
				require.NoError(t, err)
				assert.Len(t, queued, tc.wantQueued, "queued after the first sweep")

				// Everything healthy again; the second resumption (if any)
				// is a new request at the acquirer, which refuses it.
				l.mu.Lock()
				l.down = false
				l.mu.Unlock()
				clk.Advance(time.Minute)
				_, err = s.SweepOlderThan(ctx, time.Second)
				require.NoError(t, err)
				got, err = st.Get(ctx, "mer_1", "pay_1")
				require.NoError(t, err)
				assert.Equal(t, tc.afterStatus, got.Status, "after the second sweep")
				assert.Equal(t, tc.afterFee, got.Fee, "after the second sweep")
				queued, err = st.OutboxList(ctx, OutboxPending, 10)
				require.NoError(t, err)
				assert.Len(t, queued, tc.afterQueued, "pending after the second sweep")
				dead, err := st.OutboxList(ctx, OutboxDead, 10)
				require.NoError(t, err)
				assert.Len(t, dead, tc.afterDead, "dead after the second sweep")
				assert.Equal(t, tc.captures, l.captures(), "captures the ledger recorded")
				a.mu.Lock()
				assert.Equal(t, tc.acquirerCalls, a.captures, "capture calls at the acquirer")
				a.mu.Unlock()
				if tc.afterStatus == StatusAuthorized {
					gotOp, err = st.Operation(ctx, "cap_1")
					require.NoError(t, err)
					assert.Equal(t, OpFailed, gotOp.State, "with the ledger back and no capture in it, the refusal stands")
				}
			})
		}
	}
}
