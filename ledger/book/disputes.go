package book

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/obolpay/obol/internal/eventrelay"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
)

// ErrDisputeNotFound is returned for a dispute that does not exist or
// belongs to another merchant (the same answer for both).
var ErrDisputeNotFound = errors.New("no such dispute")

// disputeID derives a dispute's id from the chargeback line that opened
// it, so that a re-import finds the same dispute.
func disputeID(acquirer, ref, date string) string {
	h := sha256.Sum256([]byte("dispute\x00" + acquirer + "\x00" + ref + "\x00" + date))
	return "dp_" + hex.EncodeToString(h[:12])
}

// EventID derives an event's id from its object and the object's version
// (eventrelay.EventID: the gateway derives its events' ids the same way).
func EventID(objectType, objectID string, version int64, eventType string) string {
	return eventrelay.EventID(objectType, objectID, version, eventType)
}

// DisputeJSON is a dispute as the merchant sees it (the API's shape, and
// the data of its events). It holds no card data.
type DisputeJSON struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Payment   string `json:"payment"`
	Amount    int64  `json:"amount"`
	Fee       int64  `json:"fee"`
	Currency  string `json:"currency"`
	Reason    string `json:"reason"`
	Status    string `json:"status"`
	Version   int64  `json:"version"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// JSONOf is d in the API's shape.
func JSONOf(d store.Dispute) DisputeJSON {
	return DisputeJSON{ID: d.ID, Object: "dispute", Payment: d.PaymentID, Amount: d.Amount, Fee: d.Fee, Currency: d.Currency,
		Reason: d.Reason, Status: d.Status, Version: d.Version,
		CreatedAt: d.CreatedAt.UTC().Format(time.RFC3339), UpdatedAt: d.UpdatedAt.UTC().Format(time.RFC3339)}
}

// disputeEvent is the outbox event of a dispute's new state.
func disputeEvent(d store.Dispute, eventType string) store.Event {
	data, _ := json.Marshal(JSONOf(d))
	return store.Event{ID: EventID("dispute", d.ID, d.Version, eventType), Type: eventType, MerchantID: d.MerchantID,
		ObjectType: "dispute", ObjectID: d.ID, ObjectVersion: d.Version, Data: data, CreatedAt: d.UpdatedAt}
}

// Dispute reads a merchant's dispute (ErrDisputeNotFound for another
// merchant's).
func (b *Book) Dispute(ctx context.Context, merchant, id string) (store.Dispute, error) {
	d, err := b.st.Dispute(ctx, id)
	if errors.Is(err, store.ErrNoDispute) || err == nil && d.MerchantID != merchant {
		return store.Dispute{}, ErrDisputeNotFound
	}
	return d, err
}

// Disputes lists disputes, newest first.
func (b *Book) Disputes(ctx context.Context, f store.DisputeFilter) ([]store.Dispute, error) {
	return b.st.ListDisputes(ctx, f)
}

// AmountDisputed is how much of a payment is disputed and not won back:
// the amounts of its disputes that are open or lost.
func (b *Book) AmountDisputed(ctx context.Context, merchant, paymentID string) (int64, error) {
	var sum int64
	for after := ""; ; {
		ds, err := b.st.ListDisputes(ctx, store.DisputeFilter{MerchantID: merchant, PaymentID: paymentID, After: after, Limit: 1000})
		if err != nil {
			return 0, err
		}
		for _, d := range ds {
			if d.Status != store.DisputeWon {
				sum += d.Amount
			}
		}
		if len(ds) < 1000 {
			return sum, nil
		}
		after = ds[len(ds)-1].ID
	}
}

// paymentDispute is the dispute a dispute line addresses: the payment's
// newest open dispute, else its newest (for a replay), else nil.
func (b *Book) paymentDispute(ctx context.Context, merchant, paymentID string) (*store.Dispute, error) {
	ds, err := b.st.ListDisputes(ctx, store.DisputeFilter{MerchantID: merchant, PaymentID: paymentID, Limit: 1000})
	if err != nil || len(ds) == 0 {
		return nil, err
	}
	for i := range ds {
		if store.DisputeRank(ds[i].Status) < 3 {
			return &ds[i], nil
		}
	}
	return &ds[0], nil
}

// openDispute records the dispute a chargeback line opens (a replay if the
// line was imported before).
func (b *Book) openDispute(ctx context.Context, acquirer string, pv *paymentView, l SettlementLine) (store.Dispute, error) {
	d := store.Dispute{ID: disputeID(acquirer, l.Reference, l.Date), PaymentID: pv.id, MerchantID: pv.merchant, Acquirer: acquirer,
		AcquirerReference: l.Reference, Amount: -l.Amount, Fee: l.Fee, Currency: l.Currency, Reason: l.DisputeReason,
		Status: store.DisputeNeedsResponse, Version: 1, CreatedAt: b.now().UTC().Truncate(time.Microsecond)}
	d.UpdatedAt = d.CreatedAt
	got, _, err := b.st.CreateDispute(ctx, d, disputeEvent(d, "dispute.created"))
	return got, err
}

var lineStatus = map[string]string{TypeDisputeReview: store.DisputeUnderReview, TypeDisputeWon: store.DisputeWon, TypeDisputeLost: store.DisputeLost}

// settleDispute applies a dispute line (review, won, lost) to the
// payment's dispute. A won dispute reverses the chargeback and its fee to
// the merchant, and the line clears the returned funds into the bank.
// Every step replays: the reversal and the settlement have journal ids,
// and a dispute already in the line's status (or past it) is not changed.
func (b *Book) settleDispute(ctx context.Context, acquirer string, pv *paymentView, l SettlementLine, res LineResult) (LineResult, error) {
	d, err := b.paymentDispute(ctx, pv.merchant, pv.id)
	if err != nil {
		return res, err
	}
	if d == nil {
		res.Outcome, res.Reason = LineUnmatched, "the payment has no dispute"
		return res, nil
	}
	res.DisputeID = d.ID
	target := lineStatus[l.Type]
	// A dispute is won once, whatever the line's date: its settlement's
	// journal id is the dispute's.
	wonID := "settle:" + acquirer + ":dispute_won:" + d.ID
	switch {
	case d.Status == target && l.Type == TypeDisputeWon:
		switch _, err := b.st.Transaction(ctx, wonID); {
		case err == nil:
			res.Outcome = LineReplayed
			return res, nil
		case !errors.Is(err, store.ErrNoTransaction):
			return res, err
		}
		// An interrupted import: finish it below.
	case d.Status == target:
		res.Outcome = LineReplayed
		return res, nil
	case store.DisputeRank(d.Status) > store.DisputeRank(target):
		res.Outcome, res.Reason = LineReplayed, "the dispute is already "+d.Status
		return res, nil
	case store.DisputeRank(d.Status) == 3:
		res.Outcome, res.Reason = LineMismatched, "the dispute was already closed "+d.Status
		return res, nil
	}
	if l.Type == TypeDisputeWon {
		if l.Amount != d.Amount {
			res.Outcome, res.Reason = LineMismatched, fmt.Sprintf("amount %d, but the dispute is for %d", l.Amount, d.Amount)
			return res, nil
		}
		if l.Fee > d.Fee {
			res.Outcome, res.Reason = LineMismatched, fmt.Sprintf("returns a fee of %d, but the dispute fee was %d", l.Fee, d.Fee)
			return res, nil
		}
		cur := d.Currency
		rev := journal.Transaction{ID: "pay:" + pv.id + ":dispute:" + d.ID + ":won", Description: "chargeback reversed (dispute won)",
			Postings: []journal.Posting{
				{AccountID: MerchantAccount(pv.merchant, cur, Pending), Amount: d.Amount, Currency: cur},
				{AccountID: PlatformAccount(cur, Chargebacks), Amount: -d.Amount, Currency: cur},
			},
			Metadata: map[string]string{"type": "chargeback_reversal", "payment_id": pv.id, "merchant_id": pv.merchant, "dispute_id": d.ID,
				"acquirer": acquirer, "acquirer_reference": l.Reference}}
		if d.Fee > 0 {
			rev.Postings = append(rev.Postings,
				journal.Posting{AccountID: MerchantAccount(pv.merchant, cur, Pending), Amount: d.Fee, Currency: cur},
				journal.Posting{AccountID: PlatformAccount(cur, AcquirerFees), Amount: -d.Fee, Currency: cur})
		}
		if _, err := b.st.Post(ctx, rev); err != nil {
			return res, err
		}
	}
	if d.Status != target {
		next := *d
		next.Status, next.Version, next.UpdatedAt = target, d.Version+1, b.now().UTC().Truncate(time.Microsecond)
		typ := "dispute.updated"
		if store.DisputeRank(target) == 3 {
			typ = "dispute.closed"
		}
		if _, err := b.st.UpdateDispute(ctx, next, disputeEvent(next, typ)); err != nil {
			return res, err
		}
	}
	if l.Type == TypeDisputeWon {
		cur := l.Currency
		legs := []journal.Posting{
			{AccountID: PlatformAccount(cur, Chargebacks), Amount: l.Amount, Currency: cur},
			{AccountID: PlatformAccount(cur, Bank), Amount: -(l.Amount + l.Fee), Currency: cur},
		}
		if l.Fee > 0 {
			legs = append(legs, journal.Posting{AccountID: PlatformAccount(cur, AcquirerFees), Amount: l.Fee, Currency: cur})
		}
		meta := map[string]string{"type": "settlement_" + l.Type, "payment_id": pv.id, "merchant_id": pv.merchant, "acquirer": acquirer,
			"acquirer_reference": l.Reference, "settled_date": l.Date, "line_fee": strconv.FormatInt(l.Fee, 10), "dispute_id": d.ID}
		if _, err := b.st.Post(ctx, journal.Transaction{ID: wonID, Postings: legs, Description: "settlement " + l.Type, Metadata: meta}); err != nil {
			return res, err
		}
	}
	res.Outcome = LineMatched
	return res, nil
}
