// Package booktest is the payments book's scenario suite, run on every
// journal backend (PostgreSQL and SQLite) so the chart of accounts behaves
// the same on both.
package booktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/store"
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := book.ParseConfig([]byte(Settings))
			if err != nil {
				t.Fatal(err)
			}
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
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	sums := map[string]int64{}
	for _, prefix := range []string{"merchant:", "platform:"} {
		accts, err := st.Accounts(ctx, prefix, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range accts {
			sums[a.Currency] += a.Balance.Posted
		}
	}
	for cur, s := range sums {
		if s != 0 {
			t.Fatalf("%s accounts sum to %d: money was created or lost", cur, s)
		}
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
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance.Posted
}

func pay(id, m string, amount int64, ref string) book.Payment {
	return book.Payment{PaymentID: id, MerchantID: m, Currency: "USD", Amount: amount, Acquirer: "simulator", AcquirerReference: ref}
}

func testLifecycle(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 10000, "ref1")))
	if bal := balances(t, b, "mer_a"); bal.Held != 10000 || bal.Pending != 0 {
		t.Fatalf("after authorization: %+v", bal)
	}
	_, fee, err := b.Capture(ctx, pay("p1", "mer_a", 10000, ""))
	if err != nil || fee != 320 {
		t.Fatalf("capture: fee %d, %v (want 2.9%% + 30 = 320)", fee, err)
	}
	if r, _, err := b.Capture(ctx, pay("p1", "mer_a", 10000, "")); err != nil || !r.Replayed {
		t.Fatalf("retried capture: %+v %v", r, err)
	}
	must(b.Authorize(ctx, pay("p2", "mer_a", 5000, "ref2")))
	// A retry on a later day replays the first authorization (its expiry
	// came from the first day).
	b.SetClock(func() time.Time { return time.Now().Add(36 * time.Hour) })
	if r, err := b.Authorize(ctx, pay("p2", "mer_a", 5000, "ref2")); err != nil || !r.Replayed {
		t.Fatalf("authorization retried the next day: %+v %v", r, err)
	}
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
			if err := tt.do(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	r1 := pay("p1", "mer_a", 3000, "")
	r1.RefundID = "r1"
	must(b.Refund(ctx, r1))
	if r, err := b.Refund(ctx, r1); err != nil || !r.Replayed {
		t.Fatalf("retried refund: %+v %v", r, err)
	}
	r2 := pay("p1", "mer_a", 7001, "")
	r2.RefundID = "r2"
	if _, err := b.Refund(ctx, r2); !errors.Is(err, book.ErrRefundExceeds) {
		t.Fatalf("second refund above what is left: %v", err)
	}
	if bal := balances(t, b, "mer_a"); bal.Pending != 10000-320-3000 || bal.Held != 0 {
		t.Fatalf("after refund: %+v", bal)
	}
	if tot := must(b.Totals(ctx, "p1")); tot.Captured != 10000 || tot.Refunded != 3000 || tot.Fee != 320 {
		t.Fatalf("totals %+v", tot)
	}

	// Today nothing has matured (T+2).
	today := time.Now()
	rep := must(b.RunPayouts(ctx, book.RunOptions{Date: today}))
	if len(rep.Payouts) != 0 || len(rep.Released) != 0 {
		t.Fatalf("payout run inside the delay: %+v", rep)
	}
	// A run that pays nothing says why: the funds are in the delay.
	if len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], "6680 is still pending in the T+2 payout delay") {
		t.Fatalf("skip reason inside the delay: %q", rep.Skipped)
	}
	later := today.Add(3 * 24 * time.Hour)
	rep = must(b.RunPayouts(ctx, book.RunOptions{Date: later}))
	if len(rep.Released) != 1 || rep.Released[0].Amount != 6680 || rep.Released[0].Reserved != 668 || len(rep.Payouts) != 1 || rep.Payouts[0].Amount != 6012 {
		t.Fatalf("payout run after T+2: %+v", rep)
	}
	po := rep.Payouts[0]
	if bal := balances(t, b, "mer_a"); bal.Pending != 0 || bal.Available != 0 || bal.Reserve != 668 || bal.InTransit != 6012 {
		t.Fatalf("after payout: %+v", bal)
	}
	again := must(b.RunPayouts(ctx, book.RunOptions{Date: later}))
	if len(again.Released) != 0 || len(again.Payouts) != 1 || again.Payouts[0].ID != po.ID || again.Payouts[0].Amount != po.Amount {
		t.Fatalf("rerun of the same date: %+v", again)
	}
	if p := must(b.MarkPayout(ctx, po.ID, book.PayoutPaid)); p.Status != book.PayoutPaid {
		t.Fatalf("paid: %+v", p)
	}
	if _, err := b.MarkPayout(ctx, po.ID, book.PayoutFailed); !errors.Is(err, book.ErrPayoutClosed) {
		t.Fatalf("failed after paid: %v", err)
	}
	if _, err := b.MarkPayout(ctx, "po_nope", book.PayoutPaid); !errors.Is(err, book.ErrPayoutNotFound) {
		t.Fatalf("unknown payout: %v", err)
	}
	var csv bytes.Buffer
	if err := book.WritePayoutsCSV(&csv, must(b.Payouts(ctx, po.Batch))); err != nil {
		t.Fatal(err)
	}
	if want := po.ID + ",mer_a,USD,6012,60.12,paid,"; !strings.Contains(csv.String(), want) {
		t.Fatalf("payout CSV:\n%s\nwant a line starting %q", csv.String(), want)
	}

	// Settlement: the capture (net of the acquirer's fee), the refund, an
	// unknown reference and a wrong amount.
	file := "acquirer_reference,amount,fee,currency,settled_date,type\n" +
		"ref1,10000,300,USD,2026-11-20,capture\n" +
		"ref1,-3000,0,USD,2026-11-20,refund\n" +
		"nobody,500,10,USD,2026-11-20,capture\n" +
		"ref2,5000,100,USD,2026-11-20,capture\n"
	lines := must(book.ParseSettlement(strings.NewReader(file), "USD"))
	srep := must(b.ImportSettlement(ctx, "simulator", lines))
	if srep.Matched != 2 || srep.Unmatched != 2 || srep.Mismatched != 0 || srep.SettledGross != 7000 || srep.SettledFees != 300 {
		t.Fatalf("settlement report: %+v", srep)
	}
	if got := account(t, b, book.PlatformAccount("USD", book.Receivable)); got != 0 {
		t.Fatalf("receivable after settlement: %d", got)
	}
	if got := account(t, b, book.PlatformAccount("USD", book.Refunds)); got != 0 {
		t.Fatalf("refunds after settlement: %d", got)
	}
	if srep := must(b.ImportSettlement(ctx, "simulator", lines)); srep.Replayed != 2 || srep.Matched != 0 {
		t.Fatalf("re-import: %+v", srep)
	}
	wrong := must(book.ParseSettlement(strings.NewReader("acquirer_reference,amount,fee,currency,settled_date\nref1,10,0,USD,2026-11-21\n"), ""))
	if srep := must(b.ImportSettlement(ctx, "simulator", wrong)); srep.Mismatched != 1 {
		t.Fatalf("amount mismatch: %+v", srep)
	}
	// Bank: +9700 in from the capture, -3000 out for the refund, -6012 paid out.
	if got := account(t, b, book.PlatformAccount("USD", book.Bank)); got != -(9700 - 3000 - 6012) {
		t.Fatalf("bank %d", got)
	}
}

func testChargeback(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 2000, "cb1")))
	capture(t, b, pay("p1", "mer_a", 2000, ""))
	file := "acquirer_reference,amount,fee,currency,settled_date,type\ncb1,2000,60,USD,2026-11-20,capture\ncb1,-2000,1500,USD,2026-11-21,chargeback\n"
	srep := must(b.ImportSettlement(ctx, "simulator", must(book.ParseSettlement(strings.NewReader(file), ""))))
	if srep.Matched != 2 || srep.ChargebackGross != 2000 {
		t.Fatalf("settlement: %+v", srep)
	}
	// 2000 - fee 88 - chargeback 2000 - dispute fee 1500.
	if bal := balances(t, b, "mer_a"); bal.Pending != 2000-88-2000-1500 {
		t.Fatalf("after chargeback: %+v", bal)
	}
	if got := account(t, b, book.PlatformAccount("USD", book.Chargebacks)); got != 0 {
		t.Fatalf("chargebacks not cleared: %d", got)
	}
	// A second chargeback of the same payment exceeds what is left.
	dup := must(book.ParseSettlement(strings.NewReader("acquirer_reference,amount,fee,currency,settled_date,type\ncb1,-2000,1500,USD,2026-11-22,chargeback\n"), ""))
	if srep := must(b.ImportSettlement(ctx, "simulator", dup)); srep.Mismatched != 1 {
		t.Fatalf("second chargeback: %+v", srep)
	}

	// A failed payout returns the funds to available.
	must(b.Authorize(ctx, pay("p2", "mer_b", 10000, "x2")))
	capture(t, b, pay("p2", "mer_b", 10000, ""))
	rep := must(b.RunPayouts(ctx, book.RunOptions{Date: time.Now().Add(72 * time.Hour), Merchant: "mer_b"}))
	if len(rep.Payouts) != 1 {
		t.Fatalf("payout run: %+v", rep)
	}
	po := rep.Payouts[0]
	if p := must(b.MarkPayout(ctx, po.ID, book.PayoutFailed)); p.Status != book.PayoutFailed {
		t.Fatalf("failed: %+v", p)
	}
	if p := must(b.MarkPayout(ctx, po.ID, book.PayoutFailed)); p.Status != book.PayoutFailed {
		t.Fatalf("failed again (replay): %+v", p)
	}
	if _, err := b.MarkPayout(ctx, po.ID, book.PayoutPaid); !errors.Is(err, book.ErrPayoutClosed) {
		t.Fatalf("paid after failed: %v", err)
	}
	if bal := balances(t, b, "mer_b"); bal.Available != po.Amount || bal.InTransit != 0 {
		t.Fatalf("after the failed payout: %+v (payout %d)", bal, po.Amount)
	}
}

func testManual(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_manual", 10000, "m1")))
	capture(t, b, pay("p1", "mer_manual", 10000, ""))
	later := time.Now().Add(72 * time.Hour)
	rep := must(b.RunPayouts(ctx, book.RunOptions{Date: later}))
	if len(rep.Payouts) != 0 || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], "manual") {
		t.Fatalf("a scheduled run paid a manual merchant: %+v", rep)
	}
	// Released (no reserve for this merchant) but not paid out.
	if bal := balances(t, b, "mer_manual"); bal.Available != 10000-320 || bal.Reserve != 0 {
		t.Fatalf("after release: %+v", bal)
	}
	// A refund after release leaves a debt in pending, netted by the payout.
	r := pay("p1", "mer_manual", 1000, "")
	r.RefundID = "r1"
	must(b.Refund(ctx, r))
	rep = must(b.RunPayouts(ctx, book.RunOptions{Date: later, Merchant: "mer_manual"}))
	if len(rep.Payouts) != 1 || rep.Payouts[0].Amount != 10000-320-1000 {
		t.Fatalf("manual payout: %+v", rep)
	}
	if bal := balances(t, b, "mer_manual"); bal.Pending != 0 || bal.Available != 0 {
		t.Fatalf("after netting the debt: %+v", bal)
	}
}

func capture(t *testing.T, b *book.Book, p book.Payment) {
	t.Helper()
	if _, _, err := b.Capture(ctx, p); err != nil {
		t.Fatal(err)
	}
}
