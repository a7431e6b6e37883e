// Package booktest is the payments book's scenario suite, run on every
// journal backend (PostgreSQL and SQLite) so the chart of accounts behaves
// the same on both.
package booktest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/store"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var ctx = context.Background()

// Settings used by the suite: 2.9 % + 30, T+2, a 10 % reserve for 90 days.
const Settings = `
defaults:
  fee_bps: 290
  fee_fixed: {USD: 30, JPY: 0}
  delay_days: 2
  reserve_bps: 1000
  reserve_days: 90
merchants:
  mer_manual:
    payout_schedule: manual
    reserve_bps: 0
`

// Run runs the suite; newStore returns an empty journal per call.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b *book.Book)
	}{
		{"payment lifecycle, payouts and settlement", testLifecycle},
		{"chargeback and failed payout", testChargeback},
		{"manual schedule and debt netting", testManual},
		{"payment ledger views", testPaymentLedger},
		{"dispute lifecycle: lost and won", testDisputes},
		{"dispute import interrupted at every step", testDisputeCrash},
		{"refunds of one day in two reports", testRefundReports},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := book.ParseConfig([]byte(Settings))
			require.NoError(t, err)
			st := newStore(t)
			t.Cleanup(func() { st.Close() })
			tt.fn(t, book.New(st, cfg))
			Balanced(t, st)
		})
	}
}

// Balanced checks Verify and that every currency's accounts sum to zero.
func Balanced(t *testing.T, st store.Store) {
	t.Helper()
	rep, err := st.Verify(ctx)
	require.NoError(t, err, "verify")
	require.Empty(t, rep.Problems, "verify")
	sums := map[string]int64{}
	for _, prefix := range []string{"merchant:", "platform:"} {
		accts, err := st.Accounts(ctx, prefix, "", 1000)
		require.NoError(t, err)
		for _, a := range accts {
			sums[a.Currency] += a.Balance.Posted
		}
	}
	for cur, s := range sums {
		require.Zero(t, s, "%s accounts sum to %d: money was created or lost", cur, s)
	}
}

// must returns v, failing the test (by panic: it has no *testing.T) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func balances(t *testing.T, b *book.Book, m string) book.Balances {
	t.Helper()
	return must(b.Balances(ctx, m, "USD"))
}

func account(t *testing.T, b *book.Book, id string) int64 {
	t.Helper()
	a, err := b.Store().Account(ctx, id)
	require.NoError(t, err)
	return a.Balance.Posted
}

func pay(id, m string, amount int64, ref string) book.Payment {
	return book.Payment{PaymentID: id, MerchantID: m, Currency: "USD", Amount: amount, Acquirer: "simulator", AcquirerReference: ref}
}

func testLifecycle(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 10000, "ref1")))
	bal := balances(t, b, "mer_a")
	assert.EqualValues(t, 10000, bal.Held, "after authorization")
	assert.EqualValues(t, 0, bal.Pending, "after authorization")
	_, fee, err := b.Capture(ctx, pay("p1", "mer_a", 10000, ""))
	require.NoError(t, err, "capture")
	require.EqualValues(t, 320, fee, "capture fee: want 2.9% + 30 = 320")
	r, _, err := b.Capture(ctx, pay("p1", "mer_a", 10000, ""))
	require.NoError(t, err, "retried capture")
	require.True(t, r.Replayed, "retried capture: %+v", r)
	must(b.Authorize(ctx, pay("p2", "mer_a", 5000, "ref2")))
	// A retry on a later day replays the first authorization (its expiry
	// came from the first day).
	b.SetClock(func() time.Time { return time.Now().Add(36 * time.Hour) })
	r, err = b.Authorize(ctx, pay("p2", "mer_a", 5000, "ref2"))
	require.NoError(t, err, "authorization retried the next day")
	require.True(t, r.Replayed, "authorization retried the next day: %+v", r)
	b.SetClock(time.Now)
	must(b.Cancel(ctx, pay("p2", "mer_a", 0, "")))
	errs := []struct {
		name string
		do   func() error
		want error
	}{
		{"capture a canceled payment", func() error { _, _, err := b.Capture(ctx, pay("p2", "mer_a", 5000, "")); return err }, book.ErrAlreadyCaptured},
		{"capture without authorization", func() error { _, _, err := b.Capture(ctx, pay("p9", "mer_a", 5000, "")); return err }, book.ErrNotAuthorized},
		{"capture another merchant's payment", func() error { _, _, err := b.Capture(ctx, pay("p1", "mer_b", 1, "")); return err }, book.ErrNotAuthorized},
		{"refund above the capture", func() error {
			p := pay("p1", "mer_a", 10001, "")
			p.RefundID = "r0"
			_, err := b.Refund(ctx, p)
			return err
		}, book.ErrRefundExceeds},
		{"refund an uncaptured payment", func() error {
			p := pay("p2", "mer_a", 1, "")
			p.RefundID = "r0"
			_, err := b.Refund(ctx, p)
			return err
		}, book.ErrNotCaptured},
		{"zero amount", func() error { _, err := b.Authorize(ctx, pay("p3", "mer_a", 0, "")); return err }, book.ErrAmount},
		{"bad merchant id", func() error { _, err := b.Authorize(ctx, pay("p3", "mer a", 1, "")); return err }, book.ErrMerchantID},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.do(), tt.want)
		})
	}
	r1 := pay("p1", "mer_a", 3000, "")
	r1.RefundID = "r1"
	must(b.Refund(ctx, r1))
	rr, err := b.Refund(ctx, r1)
	require.NoError(t, err, "retried refund")
	require.True(t, rr.Replayed, "retried refund: %+v", rr)
	r2 := pay("p1", "mer_a", 7001, "")
	r2.RefundID = "r2"
	_, err = b.Refund(ctx, r2)
	require.ErrorIs(t, err, book.ErrRefundExceeds, "second refund above what is left")
	bal = balances(t, b, "mer_a")
	assert.EqualValues(t, 10000-320-3000, bal.Pending, "after refund")
	assert.EqualValues(t, 0, bal.Held, "after refund")
	tot := must(b.Totals(ctx, "p1"))
	assert.EqualValues(t, 10000, tot.Captured, "totals")
	assert.EqualValues(t, 3000, tot.Refunded, "totals")
	assert.EqualValues(t, 320, tot.Fee, "totals")

	// Today nothing has matured (T+2).
	today := time.Now()
	rep := must(b.RunPayouts(ctx, book.RunOptions{Date: today}))
	assert.Empty(t, rep.Payouts, "payout run inside the delay")
	assert.Empty(t, rep.Released, "payout run inside the delay")
	// A run that pays nothing says why: the funds are in the delay.
	require.Len(t, rep.Skipped, 1)
	assert.Contains(t, rep.Skipped[0], "6680 is still pending in the T+2 payout delay")
	later := today.Add(3 * 24 * time.Hour)
	rep = must(b.RunPayouts(ctx, book.RunOptions{Date: later}))
	require.Len(t, rep.Released, 1, "payout run after T+2: %+v", rep)
	require.Len(t, rep.Payouts, 1, "payout run after T+2: %+v", rep)
	assert.EqualValues(t, 6680, rep.Released[0].Amount, "released after T+2")
	assert.EqualValues(t, 668, rep.Released[0].Reserved, "reserved after T+2")
	assert.EqualValues(t, 6012, rep.Payouts[0].Amount, "paid out after T+2")
	po := rep.Payouts[0]
	bal = balances(t, b, "mer_a")
	assert.EqualValues(t, 0, bal.Pending, "after payout")
	assert.EqualValues(t, 0, bal.Available, "after payout")
	assert.EqualValues(t, 668, bal.Reserve, "after payout")
	assert.EqualValues(t, 6012, bal.InTransit, "after payout")
	again := must(b.RunPayouts(ctx, book.RunOptions{Date: later}))
	assert.Empty(t, again.Released, "rerun of the same date")
	if assert.Len(t, again.Payouts, 1, "rerun of the same date") {
		assert.Equal(t, po.ID, again.Payouts[0].ID, "rerun of the same date")
		assert.Equal(t, po.Amount, again.Payouts[0].Amount, "rerun of the same date")
	}
	p := must(b.MarkPayout(ctx, po.ID, book.PayoutPaid))
	require.Equal(t, book.PayoutPaid, p.Status, "paid")
	_, err = b.MarkPayout(ctx, po.ID, book.PayoutFailed)
	require.ErrorIs(t, err, book.ErrPayoutClosed, "failed after paid")
	_, err = b.MarkPayout(ctx, "po_nope", book.PayoutPaid)
	require.ErrorIs(t, err, book.ErrPayoutNotFound, "unknown payout")
	var csv bytes.Buffer
	require.NoError(t, book.WritePayoutsCSV(&csv, must(b.Payouts(ctx, po.Batch))))
	assert.Contains(t, csv.String(), po.ID+",mer_a,USD,6012,60.12,paid,", "payout CSV")

	// Settlement: the capture (net of the acquirer's fee), the refund, an
	// unknown reference and a wrong amount.
	file := "acquirer_reference,amount,fee,currency,settled_date,type\n" +
		"ref1,10000,300,USD,2026-11-20,capture\n" +
		"ref1,-3000,0,USD,2026-11-20,refund\n" +
		"nobody,500,10,USD,2026-11-20,capture\n" +
		"ref2,5000,100,USD,2026-11-20,capture\n"
	lines := must(book.ParseSettlement(strings.NewReader(file), "USD"))
	srep := must(b.ImportSettlement(ctx, "simulator", lines))
	assert.EqualValues(t, 2, srep.Matched, "settlement report")
	assert.EqualValues(t, 2, srep.Unmatched, "settlement report")
	assert.EqualValues(t, 0, srep.Mismatched, "settlement report")
	assert.EqualValues(t, 7000, srep.SettledGross, "settlement report")
	assert.EqualValues(t, 300, srep.SettledFees, "settlement report")
	assert.Zero(t, account(t, b, book.PlatformAccount("USD", book.Receivable)), "receivable after settlement")
	assert.Zero(t, account(t, b, book.PlatformAccount("USD", book.Refunds)), "refunds after settlement")
	srep = must(b.ImportSettlement(ctx, "simulator", lines))
	assert.EqualValues(t, 2, srep.Replayed, "re-import")
	assert.EqualValues(t, 0, srep.Matched, "re-import")
	wrong := must(book.ParseSettlement(strings.NewReader("acquirer_reference,amount,fee,currency,settled_date\nref1,10,0,USD,2026-11-21\n"), ""))
	srep = must(b.ImportSettlement(ctx, "simulator", wrong))
	assert.EqualValues(t, 1, srep.Mismatched, "amount mismatch")
	// Bank: +9700 in from the capture, -3000 out for the refund, -6012 paid out.
	assert.EqualValues(t, -(9700 - 3000 - 6012), account(t, b, book.PlatformAccount("USD", book.Bank)), "bank")
}

func testChargeback(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 2000, "cb1")))
	capture(t, b, pay("p1", "mer_a", 2000, ""))
	file := "acquirer_reference,amount,fee,currency,settled_date,type\ncb1,2000,60,USD,2026-11-20,capture\ncb1,-2000,1500,USD,2026-11-21,chargeback\n"
	srep := must(b.ImportSettlement(ctx, "simulator", must(book.ParseSettlement(strings.NewReader(file), ""))))
	assert.EqualValues(t, 2, srep.Matched, "settlement")
	assert.EqualValues(t, 2000, srep.ChargebackGross, "settlement")
	// 2000 - fee 88 - chargeback 2000 - dispute fee 1500.
	assert.EqualValues(t, 2000-88-2000-1500, balances(t, b, "mer_a").Pending, "after chargeback")
	assert.Zero(t, account(t, b, book.PlatformAccount("USD", book.Chargebacks)), "chargebacks not cleared")
	// A second chargeback of the same payment exceeds what is left.
	dup := must(book.ParseSettlement(strings.NewReader("acquirer_reference,amount,fee,currency,settled_date,type\ncb1,-2000,1500,USD,2026-11-22,chargeback\n"), ""))
	srep = must(b.ImportSettlement(ctx, "simulator", dup))
	assert.EqualValues(t, 1, srep.Mismatched, "second chargeback")

	// A failed payout returns the funds to available.
	must(b.Authorize(ctx, pay("p2", "mer_b", 10000, "x2")))
	capture(t, b, pay("p2", "mer_b", 10000, ""))
	rep := must(b.RunPayouts(ctx, book.RunOptions{Date: time.Now().Add(72 * time.Hour), Merchant: "mer_b"}))
	require.Len(t, rep.Payouts, 1, "payout run")
	po := rep.Payouts[0]
	require.Equal(t, book.PayoutFailed, must(b.MarkPayout(ctx, po.ID, book.PayoutFailed)).Status, "failed")
	require.Equal(t, book.PayoutFailed, must(b.MarkPayout(ctx, po.ID, book.PayoutFailed)).Status, "failed again (replay)")
	_, err := b.MarkPayout(ctx, po.ID, book.PayoutPaid)
	require.ErrorIs(t, err, book.ErrPayoutClosed, "paid after failed")
	bal := balances(t, b, "mer_b")
	assert.Equal(t, po.Amount, bal.Available, "after the failed payout")
	assert.EqualValues(t, 0, bal.InTransit, "after the failed payout")
	var failed []store.OutboxEntry
	for _, e := range must(b.Store().OutboxEvents(ctx, 0, 1000)) {
		if e.Type == "payout.failed" {
			failed = append(failed, e)
		}
	}
	require.Len(t, failed, 1, "one payout.failed event, written with the funds' return (the replay adds none)")
	assert.Equal(t, po.ID, failed[0].ObjectID)
	assert.Equal(t, "mer_b", failed[0].MerchantID)
	assert.JSONEq(t, `{"id":"`+po.ID+`","object":"payout","amount":`+fmt.Sprint(po.Amount)+`,"currency":"USD","status":"failed","batch":"`+po.Batch+`","created_at":"`+po.CreatedAt.UTC().Format(time.RFC3339)+`"}`, string(failed[0].Data))
}

func testManual(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_manual", 10000, "m1")))
	capture(t, b, pay("p1", "mer_manual", 10000, ""))
	later := time.Now().Add(72 * time.Hour)
	rep := must(b.RunPayouts(ctx, book.RunOptions{Date: later}))
	assert.Empty(t, rep.Payouts, "a scheduled run paid a manual merchant")
	if assert.Len(t, rep.Skipped, 1, "a scheduled run paid a manual merchant") {
		assert.Contains(t, rep.Skipped[0], "manual")
	}
	// Released (no reserve for this merchant) but not paid out.
	bal := balances(t, b, "mer_manual")
	assert.EqualValues(t, 10000-320, bal.Available, "after release")
	assert.EqualValues(t, 0, bal.Reserve, "after release")
	// A refund after release leaves a debt in pending, netted by the payout.
	r := pay("p1", "mer_manual", 1000, "")
	r.RefundID = "r1"
	must(b.Refund(ctx, r))
	rep = must(b.RunPayouts(ctx, book.RunOptions{Date: later, Merchant: "mer_manual"}))
	require.Len(t, rep.Payouts, 1, "manual payout")
	assert.EqualValues(t, 10000-320-1000, rep.Payouts[0].Amount, "manual payout")
	bal = balances(t, b, "mer_manual")
	assert.EqualValues(t, 0, bal.Pending, "after netting the debt")
	assert.EqualValues(t, 0, bal.Available, "after netting the debt")
}

func capture(t *testing.T, b *book.Book, p book.Payment) {
	t.Helper()
	_, _, err := b.Capture(ctx, p)
	require.NoError(t, err)
}

// testPaymentLedger: the journal's view of each payment (the ledger side of
// the reconciliation with the gateway), in every hold state.
func testPaymentLedger(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 1000, "r1")))
	must(b.Authorize(ctx, pay("p2", "mer_a", 2000, "r2")))
	_, fee, err := b.Capture(ctx, pay("p2", "mer_a", 2000, ""))
	require.NoError(t, err)
	r := pay("p2", "mer_a", 300, "")
	r.RefundID = "re_1"
	must(b.Refund(ctx, r))
	r.RefundID, r.Amount = "re_2", 200
	must(b.Refund(ctx, r))
	must(b.Authorize(ctx, pay("p3", "mer_a", 1500, "r3")))
	must(b.Cancel(ctx, pay("p3", "mer_a", 0, "")))
	// p4's hold was taken long ago: the expiry sweep voids it.
	b.SetClock(func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) })
	must(b.Authorize(ctx, pay("p4", "mer_b", 700, "r4")))
	b.SetClock(time.Now)
	n, err := b.Store().ExpirePending(ctx, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "ExpirePending: want p4's hold only")
	want := []book.PaymentLedger{
		{PaymentID: "p1", MerchantID: "mer_a", Currency: "USD", Authorized: 1000, HoldStatus: book.HoldPending, TransactionIDs: []string{"pay:p1:authorize"}},
		{PaymentID: "p2", MerchantID: "mer_a", Currency: "USD", Authorized: 2000, HoldStatus: book.HoldPosted, Captured: 2000, Fee: fee, Refunded: 500,
			Refunds:        []book.RefundEntry{{RefundID: "re_1", Amount: 300}, {RefundID: "re_2", Amount: 200}},
			TransactionIDs: []string{"pay:p2:authorize", "pay:p2:capture", "pay:p2:refund:re_1", "pay:p2:refund:re_2"}},
		{PaymentID: "p3", MerchantID: "mer_a", Currency: "USD", Authorized: 1500, HoldStatus: book.HoldVoided, TransactionIDs: []string{"pay:p3:authorize", "pay:p3:cancel"}},
		{PaymentID: "p4", MerchantID: "mer_b", Currency: "USD", Authorized: 700, HoldStatus: book.HoldExpired, TransactionIDs: []string{"pay:p4:authorize", "expire:pay:p4:authorize"}},
	}
	var got []book.PaymentLedger
	for after := ""; ; {
		page, err := b.PaymentLedgers(ctx, after, 3)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].PaymentID
	}
	assert.Equal(t, want, got, "PaymentLedgers")
	p, err := b.PaymentLedger(ctx, "nope")
	require.NoError(t, err, "unknown payment")
	assert.True(t, p.Empty(), "unknown payment: %+v", p)
}
