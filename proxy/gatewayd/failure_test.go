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

	"github.com/obolpay/obol/internal/testenv"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// eventually waits (at most 15 s) for a restarted service to be redialed
// by the gateway's gRPC client, which backs off between attempts.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	if err := testenv.WaitFor(15*time.Second, func() error {
		if !f() {
			return errors.New(what)
		}
		return nil
	}); err != nil {
		t.Fatalf("gave up waiting: %v", err)
	}
}

func (s *stack) balances(t *testing.T) *ledgerv1.MerchantBalances {
	t.Helper()
	b, err := s.ledger.GetMerchantBalances(s.ledgerCtx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: s.merchantID, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
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
	if st, p := s.pay(t, body, ""); st != 200 || p["status"] != "authorized" {
		t.Fatalf("warm-up payment: %d %v", st, p)
	}
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
				if st != http.StatusServiceUnavailable || errCode(m) != tt.code {
					t.Fatalf("attempt %d with %s down: %d %v, want 503 %s", i, tt.dep, st, m, tt.code)
				}
			}
			if n := s.sim.Requests("authorize") - calls; n != 0 {
				t.Fatalf("the acquirer received %d authorizations with %s down", n, tt.dep)
			}
			st, list := s.call(t, "GET", "http://"+s.gw+"/v1/payments?status=processing", "", "")
			if left, _ := list["payments"].([]any); st != 200 || len(left) != 0 {
				t.Fatalf("a refused payment was left behind: %d %v", st, list)
			}
			s.deps[tt.dep].up(t)
			if b := s.balances(t); b.Held != held {
				t.Fatalf("ledger held %d during the outage, want %d", b.Held, held)
			}
			// Back: the same Idempotency-Key now pays, once.
			var p map[string]any
			eventually(t, tt.dep+" back", func() bool {
				var st int
				st, p = s.pay(t, body, "outage-"+tt.dep)
				return st == 200
			})
			if p["status"] != "authorized" || s.sim.Authorizations()-auths != 1 {
				t.Fatalf("after %s came back: %v (%d new authorizations)", tt.dep, p, s.sim.Authorizations()-auths)
			}
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
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	breakStoreOnAuthorize := func() {
		h := func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/authorizations") {
				s.hook.Store(nil)
				exec(`ALTER TABLE payments RENAME TO payments_gone`)
			}
		}
		s.hook.Store(&h)
	}
	tok := s.tokenize(t, "4242424242424242", "123")
	body := `{"token":"` + tok + `","amount":1500,"currency":"USD","capture":true}`

	t.Run("retry resumes", func(t *testing.T) {
		auths := s.sim.Authorizations()
		breakStoreOnAuthorize()
		if st, m := s.pay(t, body, "store-1"); st != 503 || errCode(m) != "storage_unavailable" {
			t.Fatalf("with the store failing: %d %v", st, m)
		}
		exec(`ALTER TABLE payments_gone RENAME TO payments`)
		st, p := s.pay(t, body, "store-1")
		if st != 200 || p["status"] != "captured" || p["fee"] == nil {
			t.Fatalf("retry: %d %v", st, p)
		}
		if n := s.sim.Authorizations() - auths; n != 1 {
			t.Fatalf("the acquirer made %d authorizations, want 1", n)
		}
		fee := num(t, p["fee"])
		if b := s.balances(t); b.Held != 0 || fee <= 0 || b.Pending != 1500-fee {
			t.Fatalf("ledger: %+v (fee %d)", b, fee)
		}
	})

	t.Run("sweeper reverses an orphan", func(t *testing.T) {
		before := s.balances(t)
		rev := s.sim.Requests("reversal")
		breakStoreOnAuthorize()
		if st, m := s.pay(t, body, ""); st != 503 || errCode(m) != "storage_unavailable" {
			t.Fatalf("with the store failing: %d %v", st, m)
		}
		exec(`ALTER TABLE payments_gone RENAME TO payments`)
		st, list := s.call(t, "GET", "http://"+s.gw+"/v1/payments?status=processing", "", "")
		if st != 200 || len(list["payments"].([]any)) != 1 {
			t.Fatalf("processing payments: %d %v", st, list)
		}
		id := list["payments"].([]any)[0].(map[string]any)["id"].(string)
		res, err := s.gateway.Service.SweepOlderThan(context.Background(), 0)
		if err != nil || res.Recovered != 1 {
			t.Fatalf("sweep: %+v %v", res, err)
		}
		if n := s.sim.Requests("reversal") - rev; n != 1 {
			t.Fatalf("reversals: %d, want 1", n)
		}
		st, p := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+id, "", "")
		if st != 200 || p["status"] != "failed" || p["decline_code"] != "processing_abandoned" {
			t.Fatalf("after the sweep: %d %v", st, p)
		}
		if b := s.balances(t); b.Held != before.Held || b.Pending != before.Pending {
			t.Fatalf("ledger after the sweep: %+v, want as before %+v", b, before)
		}
		if v, err := s.ledger.Verify(s.ledgerCtx, &ledgerv1.VerifyRequest{}); err != nil || len(v.Problems) != 0 {
			t.Fatalf("ledger verify: %+v %v", v, err)
		}
	})
}

// TestLedgerOutbox: the ledger goes down after the acquirer captured. The
// capture stands (the acquirer's outcome is the truth), the event waits in
// the outbox, and the sweeper delivers it once ledgerd is back.
func TestLedgerOutbox(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "4242424242424242", "123")
	st, p := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"USD","capture":false}`, "")
	if st != 200 || p["status"] != "authorized" {
		t.Fatalf("authorize: %d %v", st, p)
	}
	id := p["id"].(string)
	h := func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/capture") {
			s.hook.Store(nil)
			s.deps["ledger"].down()
		}
	}
	s.hook.Store(&h)
	st, p = s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+id+"/capture", `{}`, "cap")
	if st != 200 || p["status"] != "captured" {
		t.Fatalf("capture with the ledger going down: %d %v", st, p)
	}
	if s.sim.Requests("capture") != 1 {
		t.Fatalf("acquirer captures: %d", s.sim.Requests("capture"))
	}
	res, err := s.gateway.Service.Sweep(context.Background())
	if err != nil || res.Pending != 1 || res.Delivered != 0 {
		t.Fatalf("sweep with the ledger down: %+v %v", res, err)
	}
	s.deps["ledger"].up(t)
	eventually(t, "the outbox delivered", func() bool {
		res, err := s.gateway.Service.Sweep(context.Background())
		return err == nil && res.Delivered == 1
	})
	b := s.balances(t)
	if b.Held != 0 || b.Pending != 2500-103 {
		t.Fatalf("ledger after delivery: %+v", b)
	}
	if _, p = s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+id, "", ""); p["fee"] != 103.0 {
		t.Fatalf("fee after delivery: %v", p)
	}
	if res, err := s.gateway.Service.Sweep(context.Background()); err != nil || res.Delivered+res.Pending != 0 {
		t.Fatalf("outbox after delivery: %+v %v", res, err)
	}
}
