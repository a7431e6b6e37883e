package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/connector"
)

// merchantVault authenticates every key as mer_1 (a unit-test double).
type merchantVault struct{ vaultv1.VaultServiceClient }

func (merchantVault) AuthenticateMerchant(context.Context, *vaultv1.AuthenticateMerchantRequest, ...grpc.CallOption) (*vaultv1.AuthenticateMerchantResponse, error) {
	return &vaultv1.AuthenticateMerchantResponse{MerchantId: "mer_1"}, nil
}

// keyedAcquirer is an acquirer that keeps its promise on idempotency keys:
// a refund is made once per key. While busy[key] is set, a request with
// that key answers "in use" (another process's request with the key is in
// flight, and that one makes the refund).
type keyedAcquirer struct {
	connector.Connector
	mu      sync.Mutex
	refunds map[string]int // idempotency key -> refunds made
	calls   int
	busy    map[string]bool
	reverse []string
}

func (a *keyedAcquirer) Name() string { return "simulator" }

func (a *keyedAcquirer) Refund(_ context.Context, _ string, _ int64, key string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.busy[key] {
		delete(a.busy, key)
		a.refunds[key]++ // the other request's refund
		return connector.ErrInProgress
	}
	if a.refunds[key] == 0 {
		a.refunds[key]++
	}
	return nil
}

func (a *keyedAcquirer) Reverse(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reverse = append(a.reverse, id)
	return nil
}

func authed(key string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer sk_test_x", "idempotency-key", key))
}

func capturedPayment(t *testing.T, st TestStore, now time.Time) *Payment {
	t.Helper()
	p := &Payment{ID: "pay_refund_in_use", MerchantID: "mer_1", Status: StatusCaptured, Amount: 1000, AmountCaptured: 1000, Currency: "USD", Token: "tok_x",
		Acquirer: "simulator", AcquirerReference: "sim_auth_1", CreatedAt: now, UpdatedAt: now, Version: 1}
	require.NoError(t, st.Insert(context.Background(), p))
	return p
}

// TestRefundKeyInUse: the acquirer answers a refund "same idempotency key
// in use" (another gateway process, after a lease takeover, sent it at the
// same time). The operation stays processing and the merchant gets a
// retryable error; the retry replays it with the same key and completes
// it: one refund at the acquirer, one refund event in the ledger.
func TestRefundKeyInUse(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := newClock()
			ledger := &fakeLedger{calls: map[string]int{}}
			acq := &keyedAcquirer{refunds: map[string]int{}, busy: map[string]bool{}}
			s := New(Config{Store: st, Vault: merchantVault{}, Ledger: ledger, Connectors: map[string]connector.Connector{"simulator": acq}, Now: clk.Now, NewTicker: never})
			p := capturedPayment(t, st, clk.Now())
			opID := operationID(OpRefund, "mer_1", p.ID, "r1")
			key := "refund:" + p.ID + ":" + opID
			acq.busy[key] = true

			req := &gatewayv1.RefundPaymentRequest{Id: p.ID, Amount: 400}
			_, err := s.RefundPayment(authed("r1"), req)
			require.Error(t, err)
			assert.Equal(t, apierr.KindUnavailable, apierr.From(err).Kind, "retryable: %v", err)
			op, err := st.Operation(context.Background(), opID)
			require.NoError(t, err)
			assert.Equal(t, OpProcessing, op.State, "the outcome is unknown: the operation stays processing")

			out, err := s.RefundPayment(authed("r1"), req)
			require.NoError(t, err, "the retry completes the refund")
			assert.Equal(t, int64(400), out.GetAmountRefunded())
			assert.Equal(t, 1, acq.refunds[key], "refunds at the acquirer")
			assert.Equal(t, 2, acq.calls)
			op, err = st.Operation(context.Background(), opID)
			require.NoError(t, err)
			assert.Equal(t, OpSucceeded, op.State)
			assert.Equal(t, 1, ledger.count(p.ID), "refund events in the ledger")
		})
	}
}

// TestSweepSparesResumedPayment: the sweeper (one instance) lists a
// payment left processing; before it abandons it, a retry in another
// instance claims its resumption (touching it). The sweeper must leave it
// processing (no reversal, no failure) for the retry to finish.
func TestSweepSparesResumedPayment(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			clk := newClock()
			acq := &keyedAcquirer{refunds: map[string]int{}, busy: map[string]bool{}}
			cfg := Config{Store: st, Vault: merchantVault{}, Ledger: &fakeLedger{calls: map[string]int{}}, Connectors: map[string]connector.Connector{"simulator": acq}, Now: clk.Now, NewTicker: never}
			sweeper := New(cfg)
			t0 := clk.Now()
			p := &Payment{ID: "pay_resumed", MerchantID: "mer_1", Status: StatusProcessing, Amount: 1000, Currency: "USD", Token: "tok_x", Acquirer: "simulator",
				CreatedAt: t0, UpdatedAt: t0, Version: 1}
			require.NoError(t, st.Insert(context.Background(), p))
			clk.Advance(3 * time.Minute)
			cutoff := clk.Now().Add(-sweeper.cfg.ProcessingTimeout)
			stale, err := st.Processing(context.Background(), cutoff, 100)
			require.NoError(t, err)
			require.Len(t, stale, 1)

			// The other instance's retry claims the resumption, as create
			// does (compare-and-set on the version, touching updated_at).
			claim, err := st.Get(context.Background(), "mer_1", p.ID)
			require.NoError(t, err)
			claim.UpdatedAt = clk.Now().UTC()
			require.NoError(t, st.Update(context.Background(), claim))

			sweeper.recover(context.Background(), stale[0], cutoff)
			got, err := st.Get(context.Background(), "mer_1", p.ID)
			require.NoError(t, err)
			assert.Equal(t, StatusProcessing, got.Status, "the sweeper abandoned a payment being resumed")
			assert.Empty(t, acq.reverse, "reversals")
		})
	}
}
