package gatewayd_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/proxy/gatewayd"
)

// TestVaultOutageAfterHold: vaultd stops right after the ledger hold was
// placed, so the card cannot be revealed: the merchant gets 503
// vault_unavailable. The retry with the same Idempotency-Key, once vaultd
// is back, authorizes and captures on a valid hold: the ledger's capture
// equals the gateway's and the acquirer's, nothing is stuck in the outbox,
// and the journal verifies. (Before, the first attempt voided the hold and
// the retry replayed the voided hold: captured at the acquirer, never in
// the ledger, its capture failing in the outbox forever.)
func TestVaultOutageAfterHold(t *testing.T) {
	var stk atomic.Pointer[stack]
	var armed atomic.Bool
	afterHold := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if r, ok := req.(*ledgerv1.RecordPaymentRequest); ok && err == nil && r.GetEvent() == ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED && armed.CompareAndSwap(true, false) {
			stk.Load().deps["vault"].down()
		}
		return err
	}
	s := start(t, func(c *gatewayd.Config, _ string) {
		c.DialOptions = []grpc.DialOption{grpc.WithUnaryInterceptor(afterHold)}
	})
	stk.Store(s)
	tok := s.tokenize(t, "4242424242424242", "123")
	body := `{"token":"` + tok + `","amount":1500,"currency":"USD","capture":true}`
	before, auths := s.balances(t), s.sim.Authorizations()

	armed.Store(true)
	st, m := s.pay(t, body, "vault-outage")
	require.Equal(t, 503, st, "%v", m)
	require.Equal(t, "vault_unavailable", errCode(m))
	assert.Zero(t, s.sim.Requests("authorize"), "the acquirer was called without the card")
	s.deps["vault"].up(t)

	var p map[string]any
	eventually(t, "vaultd back", func() bool {
		var st int
		st, p = s.pay(t, body, "vault-outage")
		return st == 200
	})
	require.Equal(t, "captured", p["status"], "%v", p)
	assert.Equal(t, 1, s.sim.Authorizations()-auths, "authorizations at the acquirer")
	captured, _ := s.acquirer(t, p)
	assert.EqualValues(t, 1500, captured, "captured at the acquirer")
	assert.Equal(t, 1500.0, p["amount_captured"], "captured by the gateway")
	after := s.balances(t)
	assert.EqualValues(t, 0, after.Held-before.Held, "nothing left held")
	fee := num(t, p["fee"])
	assert.Positive(t, fee, "the ledger answered the capture with its fee")
	assert.EqualValues(t, 1500-fee, after.Pending-before.Pending, "captured in the ledger")
	var queued int
	require.NoError(t, s.gatewayDBConn(t).QueryRow(`SELECT count(*) FROM ledger_outbox`).Scan(&queued))
	assert.Zero(t, queued, "ledger events stuck in the outbox")
	s.verifyLedger(t)
}
