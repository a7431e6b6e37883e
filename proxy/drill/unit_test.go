package drill

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"

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
	flows := []flow{{key: "k1", amount: 1000, refund: 250, paymentID: "pay_1",
		ans: [3]answer{{label: want[0]}, {label: want[1]}, {label: want[2]}}}}
	clean := func() *census {
		v := func(status string, approved int) *view {
			return &view{rows: 1, approved: approved, captures: 1, refunds: 1, captured: 1000, refunded: 250, status: status}
		}
		s := side{payments: 1, authorizations: 1, captures: 1, refunds: 1, captured: 1000, refunded: 250}
		return &census{acq: s, gw: s, led: s, verifyOK: true, reconcile: &reconcile.Report{},
			acqBy: map[string]*view{"pay_1": v("approved", 1)}, gwBy: map[string]*view{"pay_1": v("partially_refunded", 1)},
			ledBy: map[string]*view{"pay_1": v("posted", 0)}, keyPayments: map[string][]string{"k1": {"pay_1"}}}
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
