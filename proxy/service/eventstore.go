package service

import (
	"context"
	"time"

	"github.com/obolpay/obol/internal/eventrelay"
)

// EventEntry is a merchant event in the gateway's event outbox.
type EventEntry struct {
	MerchantEvent
	Attempts      int
	State         string // pending, delivered or dead
	LastError     string
	NextAttemptAt time.Time
}

// eventStore is what the event relay needs of the gateway's store.
type eventStore interface {
	EventsDue(ctx context.Context, now time.Time, limit int) ([]EventEntry, error)
	EventsDelivered(ctx context.Context, ids []string) error
	EventFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error
}

// EventOutbox is the gateway's merchant events outbox as the event relay
// reads it.
func EventOutbox(st eventStore) eventrelay.Outbox { return eventOutbox{st} }

type eventOutbox struct{ st eventStore }

func (o eventOutbox) Due(ctx context.Context, now time.Time, limit int) ([]eventrelay.Entry, error) {
	es, err := o.st.EventsDue(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	out := make([]eventrelay.Entry, len(es))
	for i, e := range es {
		out[i] = eventrelay.Entry{Event: e.MerchantEvent, Attempts: e.Attempts}
	}
	return out, nil
}

func (o eventOutbox) MarkDelivered(ctx context.Context, ids []string) error {
	return o.st.EventsDelivered(ctx, ids)
}

func (o eventOutbox) MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	return o.st.EventFailed(ctx, id, next, lastError, dead)
}
