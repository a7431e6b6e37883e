package gatewayd_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// eventually waits (at most 15 s) for a restarted service to be redialed
// by the gateway's gRPC client, which backs off between attempts.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	require.NoError(t, testenv.WaitFor(15*time.Second, func() error {
		if !f() {
			return errors.New(what)
		}
		return nil
	}), "gave up waiting")
}

func (s *stack) balances(t *testing.T) *ledgerv1.MerchantBalances {
	t.Helper()
	b, err := s.ledger.GetMerchantBalances(s.ledgerCtx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: s.merchantID, Currency: "USD"})
	require.NoError(t, err)
	return b
}

// TestDependencyOutages: with vaultd, riskd or ledgerd down, a payment is a
// 503 with a code naming the service, the acquirer is never called, the
// ledger holds nothing, and the gateway recovers once the service is back.
func TestDependencyOutages(t *testing.T) {
	s := start(t)
	s.putRules(t, allowAll) // one card pays more often than velocity rules allow
	tok := s.tokenize(t, "4242424242424242", "123")
	body := `{"token":"` + tok + `","amount":700,"currency":"USD","capture":false}`
	st, p := s.pay(t, body, "")
	require.Equal(t, 200, st, "warm-up payment: %v", p)
	require.Equal(t, "authorized", p["status"], "warm-up payment: %v", p)
	cases := []struct{ dep, code string }{
		{"risk", "risk_unavailable"},
		{"ledger", "ledger_unavailable"},
		{"vault", "vault_unavailable"},
	}
	for _, tt := range cases {
		t.Run(tt.dep, func(t *testing.T) {
			held := s.balances(t).Held
			calls, auths := s.sim.Requests("authorize"), s.sim.Authorizations()
			s.deps[tt.dep].down()
			for i, idem := range []string{"", "outage-" + tt.dep} {
				st, m := s.pay(t, body, idem)
				require.Equal(t, http.StatusServiceUnavailable, st, "attempt %d with %s down: %v", i, tt.dep, m)
				require.Equal(t, tt.code, errCode(m), "attempt %d with %s down: %v", i, tt.dep, m)
			}
			require.Equal(t, calls, s.sim.Requests("authorize"), "the acquirer received authorizations with %s down", tt.dep)
			st, list := s.call(t, "GET", "http://"+s.gw+"/v1/payments?status=processing", "", "")
			require.Equal(t, 200, st, "%v", list)
			left, _ := list["payments"].([]any)
			require.Empty(t, left, "a refused payment was left behind: %v", list)
			s.deps[tt.dep].up(t)
			require.Equal(t, held, s.balances(t).Held, "ledger held during the outage")
			// Back: the same Idempotency-Key now pays, once.
			var p map[string]any
			eventually(t, tt.dep+" back", func() bool {
				var st int
				st, p = s.pay(t, body, "outage-"+tt.dep)
				return st == 200
			})
			require.Equal(t, "authorized", p["status"], "after %s came back: %v", tt.dep, p)
			require.Equal(t, 1, s.sim.Authorizations()-auths, "new authorizations after %s came back", tt.dep)
		})
	}
}

// TestStoreFailsAfterAcquirer: the gateway's database fails after the
// acquirer approved. The merchant gets a 503; a retry with the same
// Idempotency-Key resumes the same payment and the acquirer replays it (no
// second authorization). Without a key, the sweeper reverses the orphan
// and releases its hold.
func TestStoreFailsAfterAcquirer(t *testing.T) {
	s := start(t)
	db, err := sql.Open("pgx", s.gatewayDB)
	require.NoError(t, err)
	defer db.Close()
	exec := func(q string) error {
		_, err := db.Exec(q)
		return err
	}
	breakStoreOnAuthorize := func() {
		h := func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/authorizations") {
				s.hook.Store(nil)
				// The simulator's handler goroutine: assert, not require.
				assert.NoError(t, exec(`ALTER TABLE payments RENAME TO payments_gone`))
			}
		}
		s.hook.Store(&h)
	}
	tok := s.tokenize(t, "4242424242424242", "123")
	body := `{"token":"` + tok + `","amount":1500,"currency":"USD","capture":true}`

	t.Run("retry resumes", func(t *testing.T) {
		auths := s.sim.Authorizations()
		breakStoreOnAuthorize()
		st, m := s.pay(t, body, "store-1")
		require.Equal(t, 503, st, "with the store failing: %v", m)
		require.Equal(t, "storage_unavailable", errCode(m), "with the store failing")
		require.NoError(t, exec(`ALTER TABLE payments_gone RENAME TO payments`))
		st, p := s.pay(t, body, "store-1")
		require.Equal(t, 200, st, "retry: %v", p)
		require.Equal(t, "captured", p["status"], "retry: %v", p)
		require.NotNil(t, p["fee"], "retry: %v", p)
		require.Equal(t, 1, s.sim.Authorizations()-auths, "authorizations the acquirer made")
		fee := num(t, p["fee"])
		b := s.balances(t)
		require.EqualValues(t, 0, b.Held, "ledger: %+v", b)
		require.Positive(t, fee)
		require.Equal(t, 1500-fee, b.Pending, "ledger: %+v (fee %d)", b, fee)
	})

	t.Run("sweeper reverses an orphan", func(t *testing.T) {
		before := s.balances(t)
		rev := s.sim.Requests("reversal")
		breakStoreOnAuthorize()
		st, m := s.pay(t, body, "")
		require.Equal(t, 503, st, "with the store failing: %v", m)
		require.Equal(t, "storage_unavailable", errCode(m), "with the store failing")
		require.NoError(t, exec(`ALTER TABLE payments_gone RENAME TO payments`))
		st, list := s.call(t, "GET", "http://"+s.gw+"/v1/payments?status=processing", "", "")
		require.Equal(t, 200, st, "processing payments: %v", list)
		require.Len(t, list["payments"].([]any), 1, "processing payments: %v", list)
		id := list["payments"].([]any)[0].(map[string]any)["id"].(string)
		res, err := s.gateway.Service.SweepOlderThan(context.Background(), 0)
		require.NoError(t, err, "sweep")
		require.Equal(t, 1, res.Recovered, "sweep: %+v", res)
		require.Equal(t, int64(1), s.sim.Requests("reversal")-rev, "reversals")
		st, p := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+id, "", "")
		require.Equal(t, 200, st, "after the sweep: %v", p)
		require.Equal(t, "failed", p["status"], "after the sweep: %v", p)
		require.Equal(t, "processing_abandoned", p["decline_code"], "after the sweep: %v", p)
		b := s.balances(t)
		require.Equal(t, before.Held, b.Held, "ledger after the sweep: %+v, want as before %+v", b, before)
		require.Equal(t, before.Pending, b.Pending, "ledger after the sweep: %+v, want as before %+v", b, before)
		v, err := s.ledger.Verify(s.ledgerCtx, &ledgerv1.VerifyRequest{})
		require.NoError(t, err, "ledger verify")
		require.Empty(t, v.Problems, "ledger verify")
	})
}

// TestLedgerOutbox: the ledger goes down after the acquirer captured. The
// capture stands (the acquirer's outcome is the truth), the event waits in
// the outbox, and the sweeper delivers it once ledgerd is back.
func TestLedgerOutbox(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "4242424242424242", "123")
	st, p := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"USD","capture":false}`, "")
	require.Equal(t, 200, st, "authorize: %v", p)
	require.Equal(t, "authorized", p["status"], "authorize: %v", p)
	id := p["id"].(string)
	h := func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/capture") {
			s.hook.Store(nil)
			s.deps["ledger"].down()
		}
	}
	s.hook.Store(&h)
	st, p = s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+id+"/capture", `{}`, "cap")
	require.Equal(t, 200, st, "capture with the ledger going down: %v", p)
	require.Equal(t, "captured", p["status"], "capture with the ledger going down: %v", p)
	require.Equal(t, int64(1), s.sim.Requests("capture"), "acquirer captures")
	res, err := s.gateway.Service.Sweep(context.Background())
	require.NoError(t, err, "sweep with the ledger down")
	require.Equal(t, 1, res.Pending, "sweep with the ledger down: %+v", res)
	require.Equal(t, 0, res.Delivered, "sweep with the ledger down: %+v", res)
	s.deps["ledger"].up(t)
	eventually(t, "the outbox delivered", func() bool {
		res, err := s.gateway.Service.Sweep(context.Background())
		return err == nil && res.Delivered == 1
	})
	b := s.balances(t)
	require.EqualValues(t, 0, b.Held, "ledger after delivery: %+v", b)
	require.EqualValues(t, 2500-103, b.Pending, "ledger after delivery: %+v", b)
	_, p = s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+id, "", "")
	require.Equal(t, 103.0, p["fee"], "fee after delivery: %v", p)
	res, err = s.gateway.Service.Sweep(context.Background())
	require.NoError(t, err, "outbox after delivery")
	require.Zero(t, res.Delivered+res.Pending, "outbox after delivery: %+v", res)
}
