package booktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const settlementHeader = "acquirer_reference,amount,fee,currency,settled_date,type,reason\n"

func importFile(t *testing.T, b *book.Book, file string) book.SettlementReport {
	t.Helper()
	lines, err := book.ParseSettlement(strings.NewReader(settlementHeader+file), "")
	require.NoError(t, err, "parse")
	rep, err := b.ImportSettlement(ctx, "simulator", lines)
	require.NoError(t, err, "import")
	return rep
}

func outcomes(rep book.SettlementReport) []string {
	var out []string
	for _, r := range rep.Results {
		out = append(out, r.Type+":"+r.Outcome)
	}
	return out
}

func onlyDispute(t *testing.T, b *book.Book, m, payment string) store.Dispute {
	t.Helper()
	ds, err := b.Disputes(ctx, store.DisputeFilter{MerchantID: m, PaymentID: payment})
	require.NoError(t, err)
	require.Len(t, ds, 1, "disputes of %s", payment)
	return ds[0]
}

func disputed(t *testing.T, b *book.Book, m, payment string) int64 {
	t.Helper()
	return must(b.AmountDisputed(ctx, m, payment))
}

// testDisputes: a chargeback opens a dispute and posts the chargeback and
// its fee; later lines move it under review and close it lost (the
// chargeback stands) or won (the chargeback and its fee are reversed).
// Every line replays on re-import.
func testDisputes(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 2000, "d1")))
	capture(t, b, pay("p1", "mer_a", 2000, ""))
	must(b.Authorize(ctx, pay("p2", "mer_a", 3000, "d2")))
	capture(t, b, pay("p2", "mer_a", 3000, ""))
	fee1, fee2 := int64(88), int64(117) // 2.9 % + 30
	p3 := int64(0)                      // p3's capture, net of its fee, once made
	pending := func() int64 { return balances(t, b, "mer_a").Pending - p3 }
	require.EqualValues(t, 2000-fee1+3000-fee2, pending())

	day1 := "d1,2000,88,USD,2026-11-20,capture,\nd1,-2000,1500,USD,2026-11-20,chargeback,fraudulent\n" +
		"d2,3000,117,USD,2026-11-20,capture,\nd2,-3000,1500,USD,2026-11-20,chargeback,\n"
	rep := importFile(t, b, day1)
	assert.Equal(t, []string{"capture:matched", "chargeback:matched", "capture:matched", "chargeback:matched"}, outcomes(rep))
	assert.EqualValues(t, 5000, rep.ChargebackGross)
	d1, d2 := onlyDispute(t, b, "mer_a", "p1"), onlyDispute(t, b, "mer_a", "p2")
	assert.Equal(t, rep.Results[1].DisputeID, d1.ID, "the report names the dispute")
	assert.True(t, strings.HasPrefix(d1.ID, "dp_"), d1.ID)
	assert.NotEqual(t, d1.ID, d2.ID)
	assert.Equal(t, store.Dispute{ID: d1.ID, PaymentID: "p1", MerchantID: "mer_a", Acquirer: "simulator", AcquirerReference: "d1",
		Amount: 2000, Fee: 1500, Currency: "USD", Reason: "fraudulent", Status: store.DisputeNeedsResponse, Version: 1,
		CreatedAt: d1.CreatedAt, UpdatedAt: d1.CreatedAt}, d1)
	assert.Equal(t, "general", d2.Reason, "the default reason")
	assert.EqualValues(t, 2000, disputed(t, b, "mer_a", "p1"))
	assert.EqualValues(t, -fee1-1500-fee2-1500, pending(), "both chargebacks and their fees posted")

	rep = importFile(t, b, day1)
	assert.Equal(t, []string{"capture:already_posted", "chargeback:already_posted", "capture:already_posted", "chargeback:already_posted"}, outcomes(rep), "re-import")
	assert.Equal(t, d1, onlyDispute(t, b, "mer_a", "p1"), "re-import keeps the dispute")

	// Day 2: both under review; a review for a payment without a dispute.
	must(b.Authorize(ctx, pay("p3", "mer_a", 500, "d3")))
	capture(t, b, pay("p3", "mer_a", 500, ""))
	p3 = 500 - 45
	rep = importFile(t, b, "d1,0,0,USD,2026-11-21,dispute_review,\nd2,0,0,USD,2026-11-21,dispute_review,\nd3,0,0,USD,2026-11-21,dispute_review,\n")
	assert.Equal(t, []string{"dispute_review:matched", "dispute_review:matched", "dispute_review:unmatched"}, outcomes(rep))
	d1 = onlyDispute(t, b, "mer_a", "p1")
	assert.Equal(t, store.DisputeUnderReview, d1.Status)
	assert.EqualValues(t, 2, d1.Version)

	// Day 3: p1 lost, p2 won (the acquirer returns the fee too).
	day3 := "d1,0,0,USD,2026-11-22,dispute_lost,\nd2,3000,1500,USD,2026-11-22,dispute_won,\n"
	rep = importFile(t, b, day3)
	assert.Equal(t, []string{"dispute_lost:matched", "dispute_won:matched"}, outcomes(rep))
	d1, d2 = onlyDispute(t, b, "mer_a", "p1"), onlyDispute(t, b, "mer_a", "p2")
	assert.Equal(t, store.DisputeLost, d1.Status)
	assert.Equal(t, store.DisputeWon, d2.Status)
	assert.EqualValues(t, 3, d2.Version)
	assert.EqualValues(t, 2000, disputed(t, b, "mer_a", "p1"), "a lost dispute stays disputed")
	assert.Zero(t, disputed(t, b, "mer_a", "p2"), "a won dispute is not")
	assert.EqualValues(t, -fee1-1500+3000-fee2, pending(), "the won chargeback and its fee returned to the merchant")
	assert.Zero(t, account(t, b, book.PlatformAccount("USD", book.Chargebacks)), "chargebacks cleared")
	assert.EqualValues(t, -(fee1 + fee2), account(t, b, book.PlatformAccount("USD", book.AcquirerFees)), "acquirer fees: the capture fees only (the dispute fees were the merchant's or returned)")
	pl := must(b.PaymentLedger(ctx, "p2"))
	assert.Zero(t, pl.ChargedBack, "p2's chargeback reversed")
	assert.EqualValues(t, 2000, must(b.PaymentLedger(ctx, "p1")).ChargedBack)

	// Re-imports and late or contradicting lines change nothing.
	rep = importFile(t, b, day3)
	assert.Equal(t, []string{"dispute_lost:already_posted", "dispute_won:already_posted"}, outcomes(rep), "re-import of day 3")
	rep = importFile(t, b, "d2,3000,1500,USD,2026-11-25,dispute_won,\nd2,0,0,USD,2026-11-25,dispute_review,\nd1,2000,0,USD,2026-11-25,dispute_won,\n")
	assert.Equal(t, []string{"dispute_won:already_posted", "dispute_review:already_posted", "dispute_won:mismatched"}, outcomes(rep), "late lines")
	assert.Contains(t, rep.Results[2].Reason, "already closed lost")
	assert.EqualValues(t, -fee1-1500+3000-fee2, pending(), "nothing moved")

	// A won line for the wrong amount is a mismatch and posts nothing.
	must(b.Authorize(ctx, pay("p4", "mer_a", 1000, "d4")))
	capture(t, b, pay("p4", "mer_a", 1000, ""))
	importFile(t, b, "d4,-1000,1500,USD,2026-11-23,chargeback,duplicate\n")
	rep = importFile(t, b, "d4,999,0,USD,2026-11-24,dispute_won,\nd4,1000,1501,USD,2026-11-25,dispute_won,\n")
	assert.Equal(t, []string{"dispute_won:mismatched", "dispute_won:mismatched"}, outcomes(rep))
	assert.Equal(t, store.DisputeNeedsResponse, onlyDispute(t, b, "mer_a", "p4").Status)

	// Another merchant sees none of them.
	_, err := b.Dispute(ctx, "mer_b", d1.ID)
	require.ErrorIs(t, err, book.ErrDisputeNotFound)
	got, err := b.Dispute(ctx, "mer_a", d1.ID)
	require.NoError(t, err)
	assert.Equal(t, d1, got)
	all := must(b.Disputes(ctx, store.DisputeFilter{MerchantID: "mer_a"}))
	assert.Len(t, all, 3)

	// Every change is an event in the outbox, once.
	byType := map[string][]store.OutboxEntry{}
	for _, e := range must(b.Store().OutboxEvents(ctx, 0, 1000)) {
		byType[e.Type] = append(byType[e.Type], e)
		assert.Equal(t, "mer_a", e.MerchantID)
		assert.True(t, strings.HasPrefix(e.ID, "evt_"), e.ID)
	}
	assert.Len(t, byType["dispute.created"], 3)
	assert.Len(t, byType["dispute.updated"], 2)
	require.Len(t, byType["dispute.closed"], 2)
	assert.Len(t, byType["settlement.reconciled"], 6, "one per file with mer_a's lines; a re-imported file adds none")
	var closed book.DisputeJSON
	require.NoError(t, json.Unmarshal(byType["dispute.closed"][0].Data, &closed))
	assert.Equal(t, book.DisputeJSON{ID: d1.ID, Object: "dispute", Payment: "p1", Amount: 2000, Fee: 1500, Currency: "USD", Reason: "fraudulent",
		Status: store.DisputeLost, Version: 3, CreatedAt: closed.CreatedAt, UpdatedAt: closed.UpdatedAt}, closed)
	assert.EqualValues(t, 3, byType["dispute.closed"][0].ObjectVersion)
	var stl book.SettlementJSON
	require.NoError(t, json.Unmarshal(byType["settlement.reconciled"][3].Data, &stl), "the late lines' file")
	assert.Equal(t, 1, stl.Mismatched, "the mismatches are in the event")
	assert.Equal(t, 2, stl.AlreadyPosted)
}

// faulty fails one store call (by operation and transaction or dispute
// id) once, as a crash there would.
type faulty struct {
	store.Store
	failOp, failID string
}

var errCrash = errors.New("crash")

func (f *faulty) trip(op, id string) error {
	if f.failOp == op && (f.failID == "" || strings.Contains(id, f.failID)) {
		f.failOp = ""
		return errCrash
	}
	return nil
}

func (f *faulty) Post(c context.Context, t journal.Transaction) (store.Result, error) {
	if err := f.trip("post", t.ID); err != nil {
		return store.Result{}, err
	}
	return f.Store.Post(c, t)
}

func (f *faulty) CreateDispute(c context.Context, d store.Dispute, ev ...store.Event) (store.Dispute, bool, error) {
	if err := f.trip("create", d.ID); err != nil {
		return store.Dispute{}, false, err
	}
	return f.Store.CreateDispute(c, d, ev...)
}

func (f *faulty) UpdateDispute(c context.Context, d store.Dispute, ev ...store.Event) (store.Dispute, error) {
	if err := f.trip("update", d.ID); err != nil {
		return store.Dispute{}, err
	}
	return f.Store.UpdateDispute(c, d, ev...)
}

// testDisputeCrash: an import that fails at any step (posting the
// chargeback, creating the dispute, posting the settlement, reversing,
// updating the dispute, posting the won settlement) is rerun and ends as
// one clean import: one dispute, each transaction once, the journal
// verified.
func testDisputeCrash(t *testing.T, b *book.Book) {
	steps := []struct{ op, id string }{
		{"post", ":chargeback:"}, {"create", ""}, {"post", ":chargeback:2026"},
		{"update", ""}, {"post", ":won"}, {"post", "dispute_won:"},
	}
	f := &faulty{Store: b.Store()}
	fb := book.New(f, b.Config())
	run := func(file string) (book.SettlementReport, error) {
		return fb.ImportSettlement(ctx, "simulator", must(book.ParseSettlement(strings.NewReader(settlementHeader+file), "")))
	}
	for i, s := range steps {
		t.Run(s.op+" "+s.id, func(t *testing.T) {
			p, ref := fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)
			must(fb.Authorize(ctx, pay(p, "mer_a", 2000, ref)))
			capture(t, fb, pay(p, "mer_a", 2000, ""))
			files := []string{
				ref + ",2000,88,USD,2026-11-20,capture,\n" + ref + ",-2000,1500,USD,2026-11-20,chargeback,fraudulent\n",
				ref + ",0,0,USD,2026-11-21,dispute_review,\n" + ref + ",2000,1500,USD,2026-11-22,dispute_won,\n",
			}
			for j, file := range files {
				if j == i/3 {
					f.failOp, f.failID = s.op, s.id
					_, err := run(file)
					require.ErrorIs(t, err, errCrash, "the fault did not happen")
				}
				rep, err := run(file)
				require.NoError(t, err, "rerun")
				for _, r := range rep.Results {
					assert.Contains(t, []string{book.LineMatched, book.LineReplayed}, r.Outcome, "rerun: %+v", r)
				}
				Balanced(t, f)
			}
			d := onlyDispute(t, fb, "mer_a", p)
			assert.Equal(t, store.DisputeWon, d.Status)
			assert.EqualValues(t, 3, d.Version)
			pl := must(fb.PaymentLedger(ctx, p))
			assert.Zero(t, pl.ChargedBack, "chargeback reversed once")
			assert.Zero(t, account(t, fb, book.PlatformAccount("USD", book.Chargebacks)))
		})
	}
	assert.EqualValues(t, 6*(2000-88), balances(t, fb, "mer_a").Pending, "each chargeback and fee posted and reversed once")
}

// testRefundReports: two refunds of one payment settled on one day in two
// reports (the simulator's report_id) are two lines; each report
// re-imported replays.
func testRefundReports(t *testing.T, b *book.Book) {
	must(b.Authorize(ctx, pay("p1", "mer_a", 1000, "rr1")))
	capture(t, b, pay("p1", "mer_a", 1000, ""))
	for _, id := range []string{"re_1", "re_2"} {
		r := pay("p1", "mer_a", 300, "")
		r.RefundID = id
		must(b.Refund(ctx, r))
	}
	const h = "acquirer_reference,amount,fee,currency,settled_date,type,reason,report_id\n"
	reports := []string{h + "rr1,1000,59,USD,2026-11-20,capture,,stl_0001\nrr1,-300,0,USD,2026-11-20,refund,,stl_0001\n", h + "rr1,-300,0,USD,2026-11-20,refund,,stl_0002\n"}
	for i, file := range reports {
		lines := must(book.ParseSettlement(strings.NewReader(file), ""))
		rep := must(b.ImportSettlement(ctx, "simulator", lines))
		assert.EqualValues(t, len(lines), rep.Matched, "report %d", i+1)
		rep = must(b.ImportSettlement(ctx, "simulator", lines))
		assert.EqualValues(t, len(lines), rep.Replayed, "report %d again", i+1)
	}
	assert.Zero(t, account(t, b, book.PlatformAccount("USD", book.Refunds)), "both refunds settled")
	assert.Zero(t, account(t, b, book.PlatformAccount("USD", book.Receivable)), "capture settled")
}
