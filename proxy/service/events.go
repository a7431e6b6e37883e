package service

import (
	"encoding/json"
	"time"

	"github.com/obolpay/obol/internal/eventrelay"
	"github.com/obolpay/obol/internal/httpapi"
)

// MerchantEvent is an event the merchant sees (payment.authorized,
// payment.captured, payment.declined, payment.failed, payment.canceled,
// refund.created), written to the gateway's event outbox in the same
// transaction as the state change it reports, and relayed to eventsd. Its
// data is the object as the REST API answers it: PAN-free (brand, last
// four and fingerprint only).
type MerchantEvent = eventrelay.Event

var restJSON = httpapi.NewMarshaler()

// statusEvent is the event type of a payment's final status ("" for
// none: processing, or a refund status, whose refund.created says it).
var statusEvent = map[string]string{StatusAuthorized: "payment.authorized", StatusCaptured: "payment.captured", StatusDeclined: "payment.declined",
	StatusFailed: "payment.failed", StatusCanceled: "payment.canceled"}

// paymentEvents are the events p's new state owes, for the write that
// stores it as version (the payment's version after that write). A
// payment authorized and captured in one request is both events.
func paymentEvents(p *Payment, version int64, authorizedToo bool) []MerchantEvent {
	typ := statusEvent[p.Status]
	if typ == "" {
		return nil
	}
	data, _ := restJSON.Marshal(toPB(p))
	mk := func(t string) MerchantEvent {
		return MerchantEvent{ID: eventrelay.EventID("payment", p.ID, version, t), Type: t, MerchantID: p.MerchantID, ObjectType: "payment",
			ObjectID: p.ID, ObjectVersion: version, Data: data, CreatedAt: p.UpdatedAt.UTC()}
	}
	if authorizedToo && p.Status == StatusCaptured {
		return []MerchantEvent{mk("payment.authorized"), mk(typ)}
	}
	return []MerchantEvent{mk(typ)}
}

// refundJSON is a refund as its event carries it: the API's refund with
// its payment.
type refundJSON struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Payment   string `json:"payment"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reason    string `json:"reason,omitempty"`
	CreatedAt string `json:"created_at"`
}

// refundEvent is refund.created for a refund of p (a refund never
// changes: version 1).
func refundEvent(p *Payment, r Refund) MerchantEvent {
	data, _ := json.Marshal(refundJSON{ID: r.ID, Object: "refund", Payment: p.ID, Amount: r.Amount, Currency: p.Currency, Reason: r.Reason,
		CreatedAt: r.CreatedAt.UTC().Format(time.RFC3339)})
	return MerchantEvent{ID: eventrelay.EventID("refund", r.ID, 1, "refund.created"), Type: "refund.created", MerchantID: p.MerchantID,
		ObjectType: "refund", ObjectID: r.ID, ObjectVersion: 1, Data: data, CreatedAt: p.UpdatedAt.UTC()}
}

// merchantEntries wraps merchant events for the outbox of a commit.
func merchantEntries(es ...MerchantEvent) []OutboxEntry {
	out := make([]OutboxEntry, len(es))
	for i := range es {
		out[i] = OutboxEntry{Merchant: &es[i]}
	}
	return out
}
