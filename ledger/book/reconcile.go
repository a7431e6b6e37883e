package book

import (
	"context"
	"errors"

	"github.com/obolpay/obol/ledger/store"
)

// Hold states of a payment's authorization in the journal.
const (
	HoldNone    = ""        // no authorization in the journal
	HoldPending = "pending" // open
	HoldPosted  = "posted"  // captured
	HoldVoided  = "voided"  // canceled
	HoldExpired = "expired" // voided when the hold window ended
)

// PaymentLedger is what the journal holds for one payment: the ledger side
// of the reconciliation with the gateway's payments.
type PaymentLedger struct {
	PaymentID, MerchantID, Currency string
	Authorized                      int64
	HoldStatus                      string
	Captured, Fee, Refunded         int64
	Refunds                         []RefundEntry
	ChargedBack                     int64
	TransactionIDs                  []string
}

// RefundEntry is one refund of a payment in the journal.
type RefundEntry struct {
	RefundID string
	Amount   int64
}

// Empty reports whether the journal knows nothing of the payment.
func (p PaymentLedger) Empty() bool { return len(p.TransactionIDs) == 0 }

// PaymentLedger reads a payment's transactions from the journal and sums
// them. A payment the journal does not know is returned Empty.
func (b *Book) PaymentLedger(ctx context.Context, paymentID string) (PaymentLedger, error) {
	out := PaymentLedger{PaymentID: paymentID}
	txs, err := b.st.FindTransactions(ctx, "payment_id", paymentID, 1000)
	if err != nil {
		return out, err
	}
	for _, t := range txs {
		out.TransactionIDs = append(out.TransactionIDs, t.ID)
		if m := t.Metadata["merchant_id"]; m != "" {
			out.MerchantID = m
		}
		if len(t.Postings) > 0 && out.Currency == "" {
			out.Currency = t.Postings[0].Currency
		}
		switch t.Metadata["type"] {
		case "authorization":
			// A hold posts nothing: its amount and state are the pending
			// transfer's.
			h, err := b.st.Pending(ctx, t.ID)
			if err != nil && !errors.Is(err, store.ErrNoTransaction) {
				return out, err
			}
			out.Authorized, out.Currency = h.Amount, h.Currency
			out.HoldStatus = h.Status
		case "capture":
			// receivable -amount, merchant pending +amount[, merchant
			// pending -fee, fee revenue +fee].
			if len(t.Postings) >= 2 {
				out.Captured += t.Postings[1].Amount
			}
			if len(t.Postings) >= 4 {
				out.Fee += t.Postings[3].Amount
			}
		case "refund":
			if len(t.Postings) == 2 {
				out.Refunded += t.Postings[1].Amount
				out.Refunds = append(out.Refunds, RefundEntry{RefundID: t.Metadata["refund_id"], Amount: t.Postings[1].Amount})
			}
		case "chargeback", "chargeback_reversal":
			if len(t.Postings) >= 1 {
				out.ChargedBack -= t.Postings[0].Amount // merchant pending -amount (+amount when reversed)
			}
		}
	}
	if out.HoldStatus == HoldVoided {
		// The expiry sweep voids a hold with a transaction that carries no
		// payment metadata: look it up by its id.
		exp, err := b.st.Transaction(ctx, "expire:"+authID(paymentID))
		switch {
		case err == nil:
			out.HoldStatus = HoldExpired
			out.TransactionIDs = append(out.TransactionIDs, exp.ID)
		case !errors.Is(err, store.ErrNoTransaction):
			return out, err
		}
	}
	return out, nil
}

// PaymentLedgers pages through every payment the journal knows, in payment
// id order, after the cursor (at most limit); the last id is the next
// cursor.
func (b *Book) PaymentLedgers(ctx context.Context, after string, limit int) ([]PaymentLedger, error) {
	ids, err := b.st.PaymentIDs(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]PaymentLedger, 0, len(ids))
	for _, id := range ids {
		p, err := b.PaymentLedger(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
