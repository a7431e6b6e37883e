package gatewayd_test

import (
	"context"
	"database/sql"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// gatewayDB opens the gateway's database for fault injection.
func (s *stack) gatewayDBConn(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", s.gatewayDB)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// gatewayExec runs fault-injection SQL on the gateway's database.
func (s *stack) gatewayExec(t *testing.T) func(q string) {
	db := s.gatewayDBConn(t)
	return func(q string) {
		t.Helper()
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
}

// acquirer reads the simulator's record of a payment's authorization.
func (s *stack) acquirer(t *testing.T, p map[string]any) (captured, refunded int64) {
	t.Helper()
	ref := p["acquirer"].(map[string]any)["reference"].(string)
	a, ok := s.sim.Authorization(ref)
	require.True(t, ok, "the simulator has no authorization %s", ref)
	return a.Captured, a.Refunded
}

// num reads a 64-bit integer of a REST answer: a JSON number (never a
// string), or absent (zero).
func num(t *testing.T, v any) int64 {
	t.Helper()
	if v == nil {
		return 0
	}
	f, ok := v.(float64)
	require.True(t, ok, "a JSON number, got %T %v", v, v)
	require.Equal(t, f, float64(int64(f)), "an integer")
	return int64(f)
}

func (s *stack) verifyLedger(t *testing.T) {
	t.Helper()
	v, err := s.ledger.Verify(s.ledgerCtx, &ledgerv1.VerifyRequest{})
	require.NoError(t, err)
	assert.Empty(t, v.Problems, "ledger verify")
}

// TestCrashBeforeIdempotencyRecord: the gateway dies between storing a
// capture's or a refund's outcome and completing its idempotency record
// (a trigger makes that completion fail, as a SIGKILL would). Once the
// claim is stale, the retry with the same Idempotency-Key takes it over:
// it must answer the first result, not capture or refund again (the crash
// drill saw refund:pay_…:re_1 and re_2 at the acquirer, twice the
// amount in the ledger) and not 409 payment_not_capturable. Refund ids
// derive from the key and are unique across payments.
func TestCrashBeforeIdempotencyRecord(t *testing.T) {
	s := start(t)
	db := s.gatewayDBConn(t)
	_, err := db.Exec(`CREATE FUNCTION crash_finish() RETURNS trigger AS $$ BEGIN
		IF NEW.response <> '' AND NEW.key LIKE 'crash-%' THEN RAISE EXCEPTION 'simulated crash'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
		CREATE TRIGGER crash_finish BEFORE UPDATE ON idempotency_keys FOR EACH ROW EXECUTE FUNCTION crash_finish()`)
	require.NoError(t, err)
	// expire makes the dead request's claim stale (as minutes passing would).
	expire := func(key string) {
		_, err := db.Exec(`UPDATE idempotency_keys SET created_at = created_at - 600000000 WHERE key = $1`, key)
		require.NoError(t, err)
		_, _ = db.Exec(`UPDATE idempotency_keys SET lease_until = 0 WHERE key = $1`, key)
	}
	tok := s.tokenize(t, "4242424242424242", "123")
	pay := func(key string, capture bool) map[string]any {
		st, p := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"USD","capture":`+strconv.FormatBool(capture)+`}`, key)
		require.Equal(t, 200, st, "%v", p)
		return p
	}

	t.Run("capture", func(t *testing.T) {
		p := pay("pay-cap", false)
		url := "http://" + s.gw + "/v1/payments/" + p["id"].(string) + "/capture"
		before := s.balances(t)
		st, first := s.call(t, "POST", url, `{}`, "crash-cap")
		require.Equal(t, 200, st, "%v", first)
		require.Equal(t, "captured", first["status"])
		expire("crash-cap")
		st, again := s.call(t, "POST", url, `{}`, "crash-cap")
		require.Equal(t, 200, st, "retry after the crash: %v", again)
		assert.Equal(t, "captured", again["status"])
		assert.Equal(t, first["amount_captured"], again["amount_captured"])
		captured, _ := s.acquirer(t, again)
		assert.EqualValues(t, 2500, captured, "captured at the acquirer")
		after := s.balances(t)
		assert.EqualValues(t, 2500-num(t, first["fee"]), after.Pending-before.Pending, "captured in the ledger, once")
		assert.EqualValues(t, -2500, after.Held-before.Held)
	})

	t.Run("refund", func(t *testing.T) {
		p := pay("pay-ref", true)
		url := "http://" + s.gw + "/v1/payments/" + p["id"].(string) + "/refunds"
		before := s.balances(t)
		st, first := s.call(t, "POST", url, `{"amount":500}`, "crash-ref")
		require.Equal(t, 200, st, "%v", first)
		expire("crash-ref")
		st, again := s.call(t, "POST", url, `{"amount":500}`, "crash-ref")
		require.Equal(t, 200, st, "retry after the crash: %v", again)
		assert.Equal(t, "partially_refunded", again["status"])
		assert.Equal(t, 500.0, again["amount_refunded"], "refunded by the gateway")
		require.Len(t, again["refunds"], 1)
		_, refunded := s.acquirer(t, again)
		assert.EqualValues(t, 500, refunded, "refunded at the acquirer")
		assert.EqualValues(t, -500, s.balances(t).Pending-before.Pending, "refunded in the ledger, once")

		// Refund ids are derived from the key, unique across payments.
		id1 := again["refunds"].([]any)[0].(map[string]any)["id"].(string)
		other := pay("pay-ref-2", true)
		st, r2 := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+other["id"].(string)+"/refunds", `{"amount":500}`, "ref-other")
		require.Equal(t, 200, st, "%v", r2)
		id2 := r2["refunds"].([]any)[0].(map[string]any)["id"].(string)
		assert.True(t, strings.HasPrefix(id1, "re_") && strings.HasPrefix(id2, "re_"), "%s %s", id1, id2)
		assert.NotEqual(t, id1, id2, "refund ids of two payments")
	})
	s.verifyLedger(t)
}

// TestOperationStoreFailsInAcquirerCall: the gateway's database fails
// while the acquirer captures or refunds (fault injected inside the
// acquirer call). With an Idempotency-Key the retry resumes the same
// operation (the acquirer replays it); without one the sweeper completes
// it, exactly once. Money is counted at the acquirer, the gateway and the
// ledger.
func TestOperationStoreFailsInAcquirerCall(t *testing.T) {
	s := start(t)
	exec := s.gatewayExec(t)
	breakStoreOn := func(suffix string) {
		h := func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, suffix) {
				s.hook.Store(nil)
				exec(`ALTER TABLE payments RENAME TO payments_gone`)
			}
		}
		s.hook.Store(&h)
	}
	repair := func() { exec(`ALTER TABLE payments_gone RENAME TO payments`) }
	tok := s.tokenize(t, "4242424242424242", "123")
	pay := func(capture bool) map[string]any {
		st, p := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"USD","capture":`+strconv.FormatBool(capture)+`}`, "")
		require.Equal(t, 200, st, "%v", p)
		return p
	}
	get := func(p map[string]any) map[string]any {
		st, out := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+p["id"].(string), "", "")
		require.Equal(t, 200, st)
		return out
	}
	sweep := func() {
		t.Helper()
		_, err := s.gateway.Service.SweepOlderThan(context.Background(), 0)
		require.NoError(t, err)
	}

	t.Run("refund with a key: the retry resumes", func(t *testing.T) {
		p := pay(true)
		before := s.balances(t)
		url := "http://" + s.gw + "/v1/payments/" + p["id"].(string) + "/refunds"
		breakStoreOn("/refunds")
		st, m := s.call(t, "POST", url, `{"amount":500}`, "ref-store")
		require.Equal(t, 503, st, "%v", m)
		assert.Equal(t, "storage_unavailable", errCode(m))
		repair()
		st, m = s.call(t, "POST", url, `{"amount":500}`, "ref-store")
		require.Equal(t, 200, st, "%v", m)
		assert.Equal(t, 500.0, m["amount_refunded"])
		_, refunded := s.acquirer(t, m)
		assert.EqualValues(t, 500, refunded)
		assert.EqualValues(t, -500, s.balances(t).Pending-before.Pending)
	})

	t.Run("refund without a key: the sweeper completes it once", func(t *testing.T) {
		p := pay(true)
		before := s.balances(t)
		url := "http://" + s.gw + "/v1/payments/" + p["id"].(string) + "/refunds"
		breakStoreOn("/refunds")
		st, m := s.call(t, "POST", url, `{"amount":700}`, "")
		require.Equal(t, 503, st, "%v", m)
		repair()
		// In flight: another refund waits for it.
		st, m = s.call(t, "POST", url, `{"amount":100}`, "")
		assert.Equal(t, 409, st, "a second refund while the first is unresolved: %v", m)
		sweep()
		out := get(p)
		assert.Equal(t, 700.0, out["amount_refunded"], "the gateway completed the refund")
		_, refunded := s.acquirer(t, out)
		assert.EqualValues(t, 700, refunded, "refunded at the acquirer, once")
		assert.EqualValues(t, -700, s.balances(t).Pending-before.Pending, "refunded in the ledger, once")
		calls := s.sim.Requests("refund")
		sweep()
		assert.Equal(t, calls, s.sim.Requests("refund"), "a later sweep does nothing more")
		assert.Equal(t, 700.0, get(p)["amount_refunded"])
	})

	t.Run("capture without a key: the sweeper completes it", func(t *testing.T) {
		p := pay(false)
		before := s.balances(t)
		breakStoreOn("/capture")
		st, m := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+p["id"].(string)+"/capture", `{}`, "")
		require.Equal(t, 503, st, "%v", m)
		repair()
		sweep()
		out := get(p)
		assert.Equal(t, "captured", out["status"])
		captured, _ := s.acquirer(t, out)
		assert.EqualValues(t, 2500, captured)
		after := s.balances(t)
		assert.EqualValues(t, -2500, after.Held-before.Held, "the hold was captured")
		assert.EqualValues(t, 2500-num(t, out["fee"]), after.Pending-before.Pending, "captured in the ledger")
	})
	s.verifyLedger(t)
}

// TestCompensationAfterOutage: a payment on the slow test card times out;
// its reversal reaches the acquirer but ledgerd stops before the hold is
// released. The failed payment keeps the release it owes, and the sweeper
// does it once ledgerd is back (before, the hold stayed until it expired).
func TestCompensationAfterOutage(t *testing.T) {
	s := start(t)
	tok := s.tokenize(t, "4000000000000036", "123")
	before := s.balances(t)
	h := func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/reversals") {
			s.hook.Store(nil)
			s.deps["ledger"].down()
		}
	}
	s.hook.Store(&h)
	st, p := s.pay(t, `{"token":"`+tok+`","amount":1000,"currency":"USD","capture":true}`, "")
	require.Equal(t, 200, st, "%v", p)
	require.Equal(t, "failed", p["status"])
	require.Equal(t, "acquirer_timeout", p["decline_code"])
	s.deps["ledger"].up(t)
	eventually(t, "the sweeper released the hold", func() bool {
		_, err := s.gateway.Service.SweepOlderThan(context.Background(), 0)
		return err == nil && s.balances(t).Held == before.Held
	})
	s.verifyLedger(t)
}

// TestCaptureLedgerFirst: a capture's ledger event goes to the ledger
// before the operation's outcome is committed, and into the outbox only
// when the ledger does not take it. A plain capture queues nothing (a
// trigger refuses any outbox row). When the outcome's commit then fails
// (a trigger refuses it, as a SIGKILL between the ledger call and the
// commit would leave it), the capture is in the ledger while the
// operation stays processing; its resumption, by a retry with the same
// Idempotency-Key or by the sweeper, captures again with the same
// acquirer key, records nothing twice and stores the ledger's fee. Money
// is counted at the acquirer, the gateway and the ledger.
func TestCaptureLedgerFirst(t *testing.T) {
	s := start(t)
	db := s.gatewayDBConn(t)
	exec := s.gatewayExec(t)
	exec(`CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql`)
	queued := func() (n int) {
		t.Helper()
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM ledger_outbox`).Scan(&n))
		return n
	}
	// One card per case: the default rules challenge a card used more
	// than 3 times in a minute.
	pans := []string{"4242424242424242", "5555555555554444", "2223003122003222", "6011111111111117"}
	leaks := testenv.NewLeakScanner()
	for _, pan := range pans {
		leaks.AddCard(pan, "123")
	}
	authorize := func() map[string]any {
		t.Helper()
		require.NotEmpty(t, pans)
		tok := s.tokenize(t, pans[0], "123")
		pans = pans[1:]
		st, p := s.pay(t, `{"token":"`+tok+`","amount":2500,"currency":"USD","capture":false}`, "")
		require.Equal(t, 200, st, "%v", p)
		require.Equal(t, "authorized", p["status"])
		return p
	}
	get := func(p map[string]any) map[string]any {
		t.Helper()
		st, out := s.call(t, "GET", "http://"+s.gw+"/v1/payments/"+p["id"].(string), "", "")
		require.Equal(t, 200, st, "%v", out)
		return out
	}

	t.Run("a capture the ledger takes queues no outbox row", func(t *testing.T) {
		p := authorize()
		before := s.balances(t)
		exec(`CREATE TRIGGER refuse_outbox BEFORE INSERT ON ledger_outbox FOR EACH ROW EXECUTE FUNCTION refuse()`)
		defer exec(`DROP TRIGGER refuse_outbox ON ledger_outbox`)
		st, m := s.call(t, "POST", "http://"+s.gw+"/v1/payments/"+p["id"].(string)+"/capture", `{}`, "")
		require.Equal(t, 200, st, "%v", m)
		assert.Equal(t, "captured", m["status"])
		fee := num(t, m["fee"])
		assert.Positive(t, fee, "the answer carries the ledger's fee")
		assert.Equal(t, fee, num(t, get(p)["fee"]), "the fee stored with the outcome")
		after := s.balances(t)
		assert.EqualValues(t, -2500, after.Held-before.Held)
		assert.EqualValues(t, 2500-fee, after.Pending-before.Pending)
	})

	for _, tc := range []struct {
		name string
		key  string
		// forget: the acquirer no longer knows the first attempt's key,
		// and refuses the resumed capture as already captured.
		forget bool
	}{
		{"the retry with the key resumes", "cap-ledger-first", false},
		{"the sweeper resumes", "", false},
		{"the acquirer forgot the key; the ledger's capture stands", "cap-ledger-forgot", true},
	} {
		t.Run("outcome not committed: "+tc.name, func(t *testing.T) {
			p := authorize()
			url := "http://" + s.gw + "/v1/payments/" + p["id"].(string) + "/capture"
			before := s.balances(t)
			captures := s.sim.Requests("capture")
			exec(`CREATE TRIGGER refuse_finish BEFORE UPDATE ON payment_operations FOR EACH ROW WHEN (NEW.state <> 'processing') EXECUTE FUNCTION refuse()`)
			st, m := s.call(t, "POST", url, `{}`, tc.key)
			exec(`DROP TRIGGER refuse_finish ON payment_operations`)
			require.Equal(t, 503, st, "%v", m)
			assert.Equal(t, "storage_unavailable", errCode(m))
			mid := s.balances(t)
			assert.EqualValues(t, -2500, mid.Held-before.Held, "the ledger took the capture before the commit")
			out := get(p)
			assert.Equal(t, "authorized", out["status"], "the outcome was not committed")
			assert.Zero(t, num(t, out["fee"]))
			assert.Zero(t, queued(), "nothing queued")

			if tc.forget {
				s.sim.ForgetIdempotencyKeys()
			}
			if tc.key != "" {
				st, m = s.call(t, "POST", url, `{}`, tc.key)
				require.Equal(t, 200, st, "the retry: %v", m)
				assert.Equal(t, "captured", m["status"])
			} else {
				res, err := s.gateway.Service.SweepOlderThan(context.Background(), 0)
				require.NoError(t, err)
				assert.Equal(t, 1, res.Resumed, "%+v", res)
			}
			out = get(p)
			assert.Equal(t, "captured", out["status"])
			captured, _ := s.acquirer(t, out)
			assert.EqualValues(t, 2500, captured, "captured at the acquirer, once")
			assert.EqualValues(t, 2, s.sim.Requests("capture")-captures, "the resumption asked the acquirer again, with the same key")
			after := s.balances(t)
			fee := num(t, out["fee"])
			assert.Positive(t, fee, "the replayed capture's fee is stored")
			assert.EqualValues(t, -2500, after.Held-before.Held, "the hold captured once")
			assert.EqualValues(t, 2500-fee, after.Pending-before.Pending, "captured in the ledger once, with the fee the gateway stored")
			assert.Zero(t, queued(), "nothing queued")

			res, err := s.gateway.Service.SweepOlderThan(context.Background(), 0)
			require.NoError(t, err)
			assert.Zero(t, res.Resumed+res.Delivered+res.Pending, "a later sweep does nothing: %+v", res)
			final := s.balances(t)
			assert.Equal(t, after.Held, final.Held)
			assert.Equal(t, after.Pending, final.Pending)
		})
	}
	s.verifyLedger(t)
	// The refusals, the fallbacks and the warnings logged on the way hold
	// no card data.
	leaks.Scan("logs", s.logs.Bytes())
	leaks.Scan("gateway pg_dump", s.pg.Dump(t, s.gatewayDB))
	leaks.Scan("ledger pg_dump", s.pg.Dump(t, s.ledgerDB))
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits, "card data in logs or dumps")
}
