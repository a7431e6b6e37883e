package drill

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/obolpay/obol/proxy/reconcile"
)

// TestRetryable: the load retries exactly what a merchant must retry with
// the same Idempotency-Key, and takes every other answer as final.
func TestRetryable(t *testing.T) {
	cases := []struct {
		name   string
		status int
		code   string
		want   bool
	}{
		{"approved", http.StatusOK, "authorized", false},
		{"vault down", http.StatusServiceUnavailable, "vault_unavailable", true},
		{"internal error", http.StatusInternalServerError, "internal", true},
		{"rate limited", http.StatusTooManyRequests, "rate_limited", true},
		{"first request still running", http.StatusConflict, "idempotency_request_in_progress", true},
		{"payment busy", http.StatusConflict, "payment_busy", true},
		{"key reused with another body", http.StatusConflict, "idempotency_key_reused", false},
		{"illegal transition", http.StatusConflict, "payment_not_capturable", false},
		{"bad input", http.StatusBadRequest, "amount_invalid", false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, retryable(tt.status, tt.code))
		})
	}
}

// TestNoAnswer names transport failures by cause.
func TestNoAnswer(t *testing.T) {
	assert.Equal(t, "no answer (connection refused)", noAnswer(fmt.Errorf("dial: %w", syscall.ECONNREFUSED)))
	assert.Equal(t, "no answer (connection reset)", noAnswer(fmt.Errorf("read: %w", syscall.ECONNRESET)))
	assert.Equal(t, "no answer (connection closed)", noAnswer(errors.New("EOF")))
}

// TestLeftovers: dead outbox entries end the wait for the sweeper but are
// never a clean drill.
func TestLeftovers(t *testing.T) {
	cases := []struct {
		name          string
		l             leftovers
		settled, zero bool
	}{
		{"nothing left", leftovers{}, true, true},
		{"payment processing", leftovers{processing: 1}, false, false},
		{"operation processing", leftovers{operations: 1}, false, false},
		{"compensation owed", leftovers{compensations: 1}, false, false},
		{"outbox pending", leftovers{outbox: 2, dead: 1}, false, false},
		{"only dead entries", leftovers{outbox: 2, dead: 2}, true, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.settled, tt.l.settled())
			assert.Equal(t, tt.zero, tt.l.zero())
		})
	}
}

// TestViolationsCatchTheMoneyBugs: the drill's checker reports the two
// ways issue 12 lost money (a double refund at the acquirer, a capture
// missing from the ledger) and passes a clean census.
func TestViolationsCatchTheMoneyBugs(t *testing.T) {
	flows := []flow{{key: "k1", amount: 1000, refund: 250, paymentID: "pay_1", token: "tok_1",
		ans: [4]answer{{label: want[0]}, {label: want[1]}, {label: want[2]}, {label: want[3]}}}}
	clean := func() *census {
		v := func(status string, approved int) *view {
			return &view{rows: 1, approved: approved, captures: 1, refunds: 1, captured: 1000, refunded: 250, status: status, token: "tok_1"}
		}
		s := side{payments: 1, authorizations: 1, captures: 1, refunds: 1, captured: 1000, refunded: 250}
		return &census{acq: s, gw: s, led: s, verifyOK: true, reconcile: &reconcile.Report{},
			acqBy: map[string]*view{"pay_1": v("approved", 1)}, gwBy: map[string]*view{"pay_1": v("partially_refunded", 1)},
			ledBy: map[string]*view{"pay_1": v("posted", 0)}, keyPayments: map[string][]string{"k1": {"pay_1"}},
			tokens: map[string]int{"tok_1": 1}, idemTokens: map[string]int{"tok_1": 1}}
	}
	assert.Empty(t, clean().violations(flows))

	double := clean()
	double.acqBy["pay_1"].refunds, double.acqBy["pay_1"].refunded, double.acq.refunded = 2, 500, 500
	assert.Equal(t, []string{
		"refunded total: acquirer 500, gateway 250, ledger 250, want 250 each",
		"k1 (pay_1): acquirer has 2 refund(s) totalling 500, want 1 of 250",
	}, double.violations(flows))

	lost := clean()
	lost.ledBy["pay_1"].captures, lost.ledBy["pay_1"].captured, lost.led.captured = 0, 0, 0
	lost.left = leftovers{outbox: 1}
	got := lost.violations(flows)
	assert.Contains(t, got, "captured total: acquirer 1000, gateway 1000, ledger 0, want 1000 each")
	assert.Contains(t, got, "k1 (pay_1): ledger has 0 capture(s) totalling 0, want 1 of 1000")
}

// TestViolationsCatchTokenBugs: a tokenize made twice (a second token for
// a retried key), a lost idempotency record and a payment by another
// token are reported.
func TestViolationsCatchTokenBugs(t *testing.T) {
	flows := []flow{{key: "k1", amount: 1000, refund: 250, paymentID: "pay_1", token: "tok_1",
		ans: [4]answer{{label: want[0]}, {label: want[1]}, {label: want[2]}, {label: want[3]}}}}
	clean := func() *census {
		v := func(status string, approved int) *view {
			return &view{rows: 1, approved: approved, captures: 1, refunds: 1, captured: 1000, refunded: 250, status: status, token: "tok_1"}
		}
		s := side{payments: 1, authorizations: 1, captures: 1, refunds: 1, captured: 1000, refunded: 250}
		return &census{acq: s, gw: s, led: s, verifyOK: true, reconcile: &reconcile.Report{},
			acqBy: map[string]*view{"pay_1": v("approved", 1)}, gwBy: map[string]*view{"pay_1": v("partially_refunded", 1)},
			ledBy: map[string]*view{"pay_1": v("posted", 0)}, keyPayments: map[string][]string{"k1": {"pay_1"}},
			tokens: map[string]int{"tok_1": 1}, idemTokens: map[string]int{"tok_1": 1}}
	}
	cases := []struct {
		name   string
		breaks func(c *census)
		want   []string
	}{
		{"a second token", func(c *census) { c.tokens["tok_2"] = 1 },
			[]string{"vault: 1 token(s) of no drill key (a tokenize made twice?): tok_2"}},
		{"a second idempotency record", func(c *census) { c.idemTokens["tok_2"] = 1 },
			[]string{"vault: 2 tokenize idempotency record(s), want 1 (one per key)"}},
		{"no idempotency record", func(c *census) { delete(c.idemTokens, "tok_1") }, []string{
			"vault: 0 tokenize idempotency record(s), want 1 (one per key)",
			"k1: token tok_1: 1 in the vault, 0 tokenize idempotency record(s), want 1 and 1"}},
		{"payment by another token", func(c *census) { c.gwBy["pay_1"].token = "tok_9" },
			[]string{`k1 (pay_1): the gateway's payment is by token "tok_9", the key's token is "tok_1"`}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := clean()
			tt.breaks(c)
			assert.Equal(t, tt.want, c.violations(flows))
		})
	}
}

// TestExclude: a drill on a shared deployment counts only what is new.
func TestExclude(t *testing.T) {
	before := &census{acqBy: map[string]*view{"pay_0": {}}, gwBy: map[string]*view{"pay_0": {}}, ledBy: map[string]*view{"pay_0": {}},
		keyPayments: map[string][]string{"old": {"pay_0"}}, tokens: map[string]int{"tok_0": 1}, idemTokens: map[string]int{"tok_0": 1}}
	now := &census{acqBy: map[string]*view{"pay_0": {}, "pay_1": {rows: 1, approved: 1, captured: 5}}, gwBy: map[string]*view{"pay_0": {}, "pay_1": {}},
		ledBy: map[string]*view{"pay_0": {}, "pay_1": {rows: 1}}, keyPayments: map[string][]string{"old": {"pay_0"}, "new": {"pay_1"}},
		tokens: map[string]int{"tok_0": 1, "tok_1": 1}, idemTokens: map[string]int{"tok_0": 1, "tok_1": 1}}
	now.exclude(before)
	assert.Equal(t, []string{"pay_1"}, keys(now.acqBy))
	assert.Equal(t, []string{"pay_1"}, keys(now.gwBy))
	assert.Equal(t, []string{"pay_1"}, keys(now.ledBy))
	assert.Equal(t, map[string][]string{"new": {"pay_1"}}, now.keyPayments)
	assert.Equal(t, map[string]int{"tok_1": 1}, now.tokens)
	assert.Equal(t, map[string]int{"tok_1": 1}, now.idemTokens)
	assert.Equal(t, side{payments: 1, authorizations: 1, captured: 5}, total(now.acqBy, false))
	assert.Equal(t, side{payments: 1, authorizations: 1}, total(now.ledBy, true))
}

func keys(m map[string]*view) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestRecovery: the time to recover runs from the first failed attempt
// answered after the fault to the first success of an attempt sent after
// it; failures before the fault or after the window's end do not count.
func TestRecovery(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	att := func(endMS int, ok bool) attempt {
		label := "503 vault_unavailable"
		if ok {
			label = "200 authorized"
		}
		return attempt{op: "authorize", start: at(endMS - 5), end: at(endMS), ok: ok, label: label}
	}
	cases := []struct {
		name     string
		attempts []attempt
		want     recovery
		text     string
	}{
		{"no failure", []attempt{att(100, true), att(2000, true)},
			recovery{recovered: true}, "time to recover 0s (no client saw a failure)"},
		{"outage", []attempt{att(900, false), att(1100, false), att(1200, true), att(1500, false), att(1700, true), att(6000, false)},
			recovery{failed: 2, firstFail: 100 * time.Millisecond, lastFail: 500 * time.Millisecond, toRecover: 100 * time.Millisecond, recovered: true},
			"time to recover 100ms (first failed attempt 100ms after the fault; 2 failed attempts, the last 500ms after the fault)"},
		{"a request in flight succeeds after the first failure", []attempt{att(1100, false),
			{op: "capture", start: at(1050), end: at(1120), ok: true, label: "200 captured"}, att(1400, false), att(2100, true)},
			recovery{failed: 2, firstFail: 100 * time.Millisecond, lastFail: 400 * time.Millisecond, toRecover: time.Second, recovered: true},
			"time to recover 1s (first failed attempt 100ms after the fault; 2 failed attempts, the last 400ms after the fault)"},
		{"never recovered", []attempt{att(1100, false), att(1300, false)},
			recovery{failed: 2, firstFail: 100 * time.Millisecond, lastFail: 300 * time.Millisecond, unrecovered: "503 vault_unavailable"},
			"NOT RECOVERED: 2 failed attempts from 100ms after the fault, no success after them (last: 503 vault_unavailable)"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			l := newLoad("", "")
			l.attempts = tt.attempts
			got := l.recovery(at(1000), at(5000))
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.text, got.String())
		})
	}
}

// TestAllowedAnswer: behind a load balancer only successes, 503s with an
// error code and the idempotency protocol's 409s pass.
func TestAllowedAnswer(t *testing.T) {
	cases := []struct {
		label            string
		direct, balanced bool
	}{
		{"200 authorized", true, true},
		{"200 tokenized", true, true},
		{"503 vault_unavailable", true, true},
		{"503", false, false}, // a proxy's own 503: no error code
		{"502", false, false},
		{"504", false, false},
		{"500 internal", false, false},
		{"409 idempotency_request_in_progress", true, true},
		{"409 payment_busy", true, true},
		{"409 idempotency_key_reused", false, false},
		{"no answer (connection refused)", true, false},
		{"no answer (timeout)", true, false},
		{"402 card_declined", false, false},
	}
	for _, tt := range cases {
		t.Run(tt.label, func(t *testing.T) {
			assert.Equal(t, tt.direct, allowedAnswer(tt.label, true), "clients straight at the daemon")
			assert.Equal(t, tt.balanced, allowedAnswer(tt.label, false), "clients behind a load balancer")
		})
	}
}
