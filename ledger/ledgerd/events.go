package ledgerd

import (
	"context"
	"time"

	"github.com/obolpay/obol/internal/eventrelay"
	"github.com/obolpay/obol/ledger/store"
)

// Outbox adapts the ledger's outbox to the event relay.
func Outbox(st store.Outbox) eventrelay.Outbox { return outbox{st} }

type outbox struct{ st store.Outbox }

func (o outbox) Due(ctx context.Context, now time.Time, limit int) ([]eventrelay.Entry, error) {
	es, err := o.st.DueEvents(ctx, now, limit)
	if err != nil {
		return nil, err
	}
	out := make([]eventrelay.Entry, len(es))
	for i, e := range es {
		out[i] = eventrelay.Entry{Event: eventrelay.Event(e.Event), Attempts: e.Attempts}
	}
	return out, nil
}

func (o outbox) MarkDelivered(ctx context.Context, ids []string) error {
	return o.st.MarkDelivered(ctx, ids)
}

func (o outbox) MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	return o.st.MarkFailed(ctx, id, next, lastError, dead)
}
