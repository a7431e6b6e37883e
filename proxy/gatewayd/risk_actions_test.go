package gatewayd_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
)

// riskActionRules sends a payment to review or challenge by amount.
const riskActionRules = `rules:
  - name: review-amount
    expression: payment.amount == 4100
    action: review
    priority: 10
  - name: challenge-amount
    expression: payment.amount == 4200
    action: challenge
    priority: 20
`

// allowAll is a rule set that allows everything, for tests about something
// else than risk that pay with one card more often than the default
// rules' velocity limits allow (those challenge, and a challenge declines).
const allowAll = `rules:
  - name: nothing
    expression: "false"
    action: block
    priority: 1
`

// putRules makes yaml riskd's active rule set.
func (s *stack) putRules(t *testing.T, yaml string) *riskv1.RuleSet {
	t.Helper()
	conn, err := grpc.NewClient(s.riskAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	rctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer risk-token")
	rs, err := riskv1.NewRiskServiceClient(conn).PutRuleSet(rctx, &riskv1.PutRuleSetRequest{Yaml: yaml})
	require.NoError(t, err)
	return rs
}

// TestRiskReviewAndChallenge: what the gateway does with riskd's review
// and challenge (both were approved silently, captured as asked):
//   - review: authorized, never captured automatically (capture:true is not
//     honoured), the payment's risk.action says review; a person captures it;
//   - challenge: declined with authentication_required (no 3-D Secure yet),
//     the acquirer is never called and nothing is held.
func TestRiskReviewAndChallenge(t *testing.T) {
	s := start(t)
	rs := s.putRules(t, riskActionRules)
	tok := s.tokenize(t, "4242424242424242", "123")

	t.Run("review authorizes without capturing", func(t *testing.T) {
		st, p := s.pay(t, `{"token":"`+tok+`","amount":4100,"currency":"USD","capture":true}`, "review-1")
		require.Equal(t, 200, st, "%v", p)
		risk, _ := p["risk"].(map[string]any)
		assert.Equal(t, "authorized", p["status"], "a payment in review is not captured")
		assert.Contains(t, []any{nil, "0", float64(0)}, p["amount_captured"], "nothing captured") // zero is omitted (or 0 / "0")
		assert.Equal(t, "review", risk["action"])
		assert.Equal(t, rs.GetVersion(), risk["rule_set_version"])
		assert.Equal(t, []any{"review-amount"}, risk["rules"])
		a, ok := s.sim.Authorization(p["acquirer"].(map[string]any)["reference"].(string))
		require.True(t, ok)
		assert.EqualValues(t, 0, a.Captured, "the acquirer was not asked to capture")
		// After the review, a person captures it.
		st, c := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+p["id"].(string)+"/capture", `{}`, "")
		require.Equal(t, 200, st, "%v", c)
		assert.Equal(t, "captured", c["status"])
	})

	t.Run("challenge is declined, never approved", func(t *testing.T) {
		calls := s.sim.Requests("authorize")
		held := s.balances(t).Held
		st, p := s.pay(t, `{"token":"`+tok+`","amount":4200,"currency":"USD","capture":true}`, "challenge-1")
		require.Equal(t, 200, st, "%v", p)
		risk, _ := p["risk"].(map[string]any)
		assert.Equal(t, "declined", p["status"])
		assert.Equal(t, "authentication_required", p["decline_code"])
		assert.Equal(t, "challenge", risk["action"])
		assert.Equal(t, int64(0), s.sim.Requests("authorize")-calls, "the acquirer is not called")
		assert.Equal(t, held, s.balances(t).Held, "nothing is held")
	})

	t.Run("allow captures as asked", func(t *testing.T) {
		st, p := s.pay(t, `{"token":"`+tok+`","amount":4300,"currency":"USD","capture":true}`, "allow-1")
		require.Equal(t, 200, st, "%v", p)
		assert.Equal(t, "captured", p["status"])
		assert.Equal(t, "allow", p["risk"].(map[string]any)["action"])
	})
}
