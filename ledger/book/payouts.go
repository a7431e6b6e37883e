package book

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
)

// Payout statuses.
const (
	PayoutInTransit = "in_transit"
	PayoutPaid      = "paid"
	PayoutFailed    = "failed"
)

// Payout is money on its way from a merchant's available balance to its
// bank account.
type Payout struct {
	ID         string
	MerchantID string
	Currency   string
	Amount     int64
	Status     string
	// Batch is the run date (YYYY-MM-DD) that created it.
	Batch     string
	CreatedAt time.Time
}

// RunOptions select what a payout run does.
type RunOptions struct {
	// Date of the run (default today, UTC). One run per merchant and
	// currency per date: rerunning the same date changes nothing.
	Date time.Time
	// Merchant limits the run to one merchant; with it, a manual-schedule
	// merchant is paid out too.
	Merchant string
}

// RunReport is what a payout run did.
type RunReport struct {
	Batch    string
	Released []Release
	Payouts  []Payout
	// Skipped explains each merchant and currency that got no payout.
	Skipped []string
}

// Release is funds moved out of the payout delay (or the reserve).
type Release struct {
	MerchantID, Currency string
	// Amount left the pending balance; Reserved of it went to the reserve.
	Amount, Reserved int64
	// FromReserve is the reserve released back to available.
	FromReserve int64
}

// RunPayouts releases matured funds (pending → available after the
// merchant's delay, with the rolling reserve held back) and creates a
// payout of each due merchant's available balance.
func (b *Book) RunPayouts(ctx context.Context, o RunOptions) (RunReport, error) {
	if o.Date.IsZero() {
		o.Date = b.now()
	}
	day := o.Date.UTC().Truncate(24 * time.Hour)
	batch := day.Format("2006-01-02")
	rep := RunReport{Batch: batch}
	if o.Merchant != "" && !validID(o.Merchant) {
		return rep, ErrMerchantID
	}
	pairs, err := b.merchants(ctx)
	if err != nil {
		return rep, err
	}
	for _, mc := range pairs {
		m, cur := mc[0], mc[1]
		if o.Merchant != "" && m != o.Merchant {
			continue
		}
		terms := b.cfg.Merchant(m)
		rel, err := b.release(ctx, m, cur, terms, day, o.Date)
		if err != nil {
			return rep, fmt.Errorf("release %s %s: %w", m, cur, err)
		}
		if rel.Amount != 0 || rel.FromReserve != 0 {
			rep.Released = append(rep.Released, rel)
		}
		switch {
		case terms.Schedule == "manual" && o.Merchant == "":
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s %s: manual payouts (run with --merchant)", m, cur))
			continue
		case terms.Schedule == "weekly" && o.Merchant == "" && day.Weekday() != terms.PayoutWeekday:
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s %s: weekly payouts on %s", m, cur, terms.PayoutWeekday))
			continue
		}
		p, why, err := b.payout(ctx, m, cur, terms, batch)
		if err != nil {
			return rep, fmt.Errorf("payout %s %s: %w", m, cur, err)
		}
		if why != "" {
			// Say why funds the merchant has are not paid: they are still
			// in the payout delay (a run for a future date sees today's
			// balances: time is not simulated).
			if pend, err := b.st.Account(ctx, MerchantAccount(m, cur, Pending)); err == nil && pend.Balance.Posted > 0 {
				why += fmt.Sprintf("; %d is still pending in the T+%d payout delay (captured funds are released %d day(s) after capture, counted from now even for a run date in the future)",
					pend.Balance.Posted, terms.DelayDays, terms.DelayDays)
			}
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s %s: %s", m, cur, why))
			continue
		}
		rep.Payouts = append(rep.Payouts, p)
	}
	return rep, nil
}

// post posts t unless a transaction with its id exists already (a run of
// the same date): then it reports done without posting.
func (b *Book) postOnce(ctx context.Context, t journal.Transaction) (bool, error) {
	if _, err := b.st.Transaction(ctx, t.ID); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNoTransaction) {
		return false, err
	}
	_, err := b.st.Post(ctx, t)
	if errors.Is(err, journal.ErrIdempotencyReused) { // a concurrent run won
		return false, nil
	}
	return err == nil, err
}

func (b *Book) release(ctx context.Context, m, cur string, terms Terms, day, at time.Time) (Release, error) {
	rel := Release{MerchantID: m, Currency: cur}
	batch := day.Format("2006-01-02")
	pend, err := b.st.Account(ctx, MerchantAccount(m, cur, Pending))
	if err != nil {
		return rel, err
	}
	// Credits younger than the delay are still in it; refunds and
	// chargebacks (debits) count against the matured part at once.
	young, err := b.st.CreditsSince(ctx, pend.ID, at.Add(-time.Duration(terms.DelayDays)*24*time.Hour))
	if err != nil {
		return rel, err
	}
	if matured := pend.Balance.Posted - young; matured > 0 {
		reserve, err := money.Fee{BasisPoints: terms.ReserveBasisPoints}.Of(matured)
		if err != nil {
			return rel, err
		}
		legs := []journal.Posting{
			{AccountID: pend.ID, Amount: -matured, Currency: cur},
			{AccountID: MerchantAccount(m, cur, Available), Amount: matured - reserve, Currency: cur},
		}
		if reserve > 0 {
			legs = append(legs, journal.Posting{AccountID: MerchantAccount(m, cur, Reserve), Amount: reserve, Currency: cur})
		}
		if legs[1].Amount == 0 {
			legs = append(legs[:1], legs[2:]...)
		}
		done, err := b.postOnce(ctx, journal.Transaction{ID: "release:" + m + ":" + cur + ":" + batch, Postings: legs, Description: fmt.Sprintf("funds released after T+%d", terms.DelayDays),
			Metadata: map[string]string{"type": "release", "merchant_id": m, "payout_batch": batch}})
		if err != nil {
			return rel, err
		}
		if done {
			rel.Amount, rel.Reserved = matured, reserve
		}
	}
	res, err := b.st.Account(ctx, MerchantAccount(m, cur, Reserve))
	if err != nil {
		return rel, err
	}
	youngRes, err := b.st.CreditsSince(ctx, res.ID, at.Add(-time.Duration(terms.ReserveDays)*24*time.Hour))
	if err != nil {
		return rel, err
	}
	if matured := res.Balance.Posted - youngRes; matured > 0 {
		done, err := b.postOnce(ctx, journal.Transaction{ID: "reserve-release:" + m + ":" + cur + ":" + batch, Postings: []journal.Posting{
			{AccountID: res.ID, Amount: -matured, Currency: cur},
			{AccountID: MerchantAccount(m, cur, Available), Amount: matured, Currency: cur},
		}, Description: fmt.Sprintf("reserve released after %d days", terms.ReserveDays), Metadata: map[string]string{"type": "reserve_release", "merchant_id": m, "payout_batch": batch}})
		if err != nil {
			return rel, err
		}
		if done {
			rel.FromReserve = matured
		}
	}
	return rel, nil
}

// PayoutID is the id of a merchant's payout in a currency on a date.
func PayoutID(merchant, currency, batch string) string {
	return "po_" + batch[:4] + batch[5:7] + batch[8:10] + "_" + currency + "_" + merchant
}

func payoutHoldID(id string) string { return "payout:" + id }

func (b *Book) payout(ctx context.Context, m, cur string, terms Terms, batch string) (Payout, string, error) {
	id := PayoutID(m, cur, batch)
	if p, err := b.Payout(ctx, id); err == nil {
		return p, "", nil // this date's payout exists
	} else if !errors.Is(err, ErrPayoutNotFound) {
		return Payout{}, "", err
	}
	avail, err := b.st.Account(ctx, MerchantAccount(m, cur, Available))
	if err != nil {
		return Payout{}, "", err
	}
	pend, err := b.st.Account(ctx, MerchantAccount(m, cur, Pending))
	if err != nil {
		return Payout{}, "", err
	}
	// A negative pending balance (refunds or chargebacks above what is
	// still pending) is the merchant's debt: it is netted first.
	debt := int64(0)
	if pend.Balance.Posted < 0 {
		debt = -pend.Balance.Posted
	}
	amount := avail.Balance.Available() - debt
	min := terms.MinimumPayout[cur]
	if amount <= 0 || amount < min {
		return Payout{}, fmt.Sprintf("available %d (after %d of debt) is below the minimum payout %d", amount, debt, max(min, 1)), nil
	}
	meta := map[string]string{"type": "payout", "merchant_id": m, "payout_id": id, "payout_batch": batch}
	legs := []journal.Posting{
		{AccountID: avail.ID, Amount: -(amount + debt), Currency: cur},
		{AccountID: MerchantAccount(m, cur, InTransit), Amount: amount, Currency: cur},
	}
	if debt > 0 {
		legs = append(legs, journal.Posting{AccountID: pend.ID, Amount: debt, Currency: cur})
	}
	if _, err := b.st.Post(ctx, journal.Transaction{ID: "payout:" + id + ":create", Postings: legs, Description: "payout created", Metadata: meta}); err != nil {
		return Payout{}, "", err
	}
	// The hold that paid (post) or failed (void) closes: exactly one can.
	if _, err := b.st.Post(ctx, journal.Transaction{ID: payoutHoldID(id), Kind: journal.KindPending, Postings: []journal.Posting{
		{AccountID: MerchantAccount(m, cur, InTransit), Amount: -amount, Currency: cur},
		{AccountID: PlatformAccount(cur, Bank), Amount: amount, Currency: cur},
	}, Description: "payout in transit", Metadata: meta}); err != nil {
		return Payout{}, "", err
	}
	p, err := b.Payout(ctx, id)
	return p, "", err
}

// Payout reads a payout.
func (b *Book) Payout(ctx context.Context, id string) (Payout, error) {
	t, err := b.st.Transaction(ctx, "payout:"+id+":create")
	if errors.Is(err, store.ErrNoTransaction) {
		return Payout{}, ErrPayoutNotFound
	} else if err != nil {
		return Payout{}, err
	}
	return b.payoutFrom(ctx, t)
}

func (b *Book) payoutFrom(ctx context.Context, t journal.Transaction) (Payout, error) {
	p := Payout{ID: t.Metadata["payout_id"], MerchantID: t.Metadata["merchant_id"], Batch: t.Metadata["payout_batch"], CreatedAt: t.CreatedAt,
		Currency: t.Postings[1].Currency, Amount: t.Postings[1].Amount, Status: PayoutInTransit}
	for _, st := range []string{PayoutPaid, PayoutFailed} {
		if _, err := b.st.Transaction(ctx, "payout:"+p.ID+":"+st); err == nil {
			p.Status = st
		} else if !errors.Is(err, store.ErrNoTransaction) {
			return p, err
		}
	}
	return p, nil
}

// Payouts lists a batch's payouts (by date, YYYY-MM-DD).
func (b *Book) Payouts(ctx context.Context, batch string) ([]Payout, error) {
	txs, err := b.st.FindTransactions(ctx, "payout_batch", batch, 1000)
	if err != nil {
		return nil, err
	}
	var out []Payout
	for _, t := range txs {
		if t.Metadata["type"] != "payout" || t.Kind != journal.KindPosted {
			continue
		}
		p, err := b.payoutFrom(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// MarkPayout records the bank's answer: paid moves the money out of the
// platform's bank account; failed returns it to the merchant's available
// balance. Exactly one of them can happen to a payout; repeating the same
// one replays.
func (b *Book) MarkPayout(ctx context.Context, id, status string) (Payout, error) {
	p, err := b.Payout(ctx, id)
	if err != nil {
		return p, err
	}
	meta := map[string]string{"type": "payout_" + status, "merchant_id": p.MerchantID, "payout_id": id}
	// The payout's event goes into the outbox with the transaction that
	// settles its fate (version 2: it was created in transit).
	done := p
	done.Status = status
	ev := payoutEvent(done, b.now())
	switch status {
	case PayoutPaid:
		_, err = b.st.PostWithEvents(ctx, journal.Transaction{ID: "payout:" + id + ":paid", Kind: journal.KindPostPending, PendingID: payoutHoldID(id), Description: "payout paid", Metadata: meta}, ev)
	case PayoutFailed:
		_, err = b.st.Post(ctx, journal.Transaction{ID: "payout:" + id + ":failed-hold", Kind: journal.KindVoidPending, PendingID: payoutHoldID(id), Description: "payout failed", Metadata: meta})
		if err == nil {
			_, err = b.st.PostWithEvents(ctx, journal.Transaction{ID: "payout:" + id + ":failed", Postings: []journal.Posting{
				{AccountID: MerchantAccount(p.MerchantID, p.Currency, InTransit), Amount: -p.Amount, Currency: p.Currency},
				{AccountID: MerchantAccount(p.MerchantID, p.Currency, Available), Amount: p.Amount, Currency: p.Currency},
			}, Description: "payout failed: funds returned", Metadata: meta}, ev)
		}
	default:
		return p, fmt.Errorf("payout status %q: must be paid or failed", status)
	}
	if errors.Is(err, journal.ErrPendingClosed) {
		return p, ErrPayoutClosed
	}
	if err != nil {
		return p, err
	}
	return b.Payout(ctx, id)
}

// WritePayoutsCSV writes a batch as CSV: payout_id, merchant_id, currency,
// amount (minor units), amount_decimal, status, created_at.
func WritePayoutsCSV(w io.Writer, payouts []Payout) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"payout_id", "merchant_id", "currency", "amount", "amount_decimal", "status", "created_at"})
	for _, p := range payouts {
		_ = cw.Write([]string{p.ID, p.MerchantID, p.Currency, strconv.FormatInt(p.Amount, 10), money.Format(p.Amount, p.Currency), p.Status, p.CreatedAt.UTC().Format(time.RFC3339)})
	}
	cw.Flush()
	return cw.Error()
}

// PayoutJSON is a payout as its events carry it.
type PayoutJSON struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Status    string `json:"status"`
	Batch     string `json:"batch"`
	CreatedAt string `json:"created_at"`
}

// payoutEvent is the outbox event of a payout that was paid or failed.
func payoutEvent(p Payout, at time.Time) store.Event {
	data, _ := json.Marshal(PayoutJSON{ID: p.ID, Object: "payout", Amount: p.Amount, Currency: p.Currency, Status: p.Status, Batch: p.Batch,
		CreatedAt: p.CreatedAt.UTC().Format(time.RFC3339)})
	typ := "payout." + p.Status
	return store.Event{ID: EventID("payout", p.ID, 2, typ), Type: typ, MerchantID: p.MerchantID, ObjectType: "payout", ObjectID: p.ID,
		ObjectVersion: 2, Data: data, CreatedAt: at.UTC().Truncate(time.Microsecond)}
}
