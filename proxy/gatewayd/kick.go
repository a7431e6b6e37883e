package gatewayd

import (
	"context"
	"time"

	"github.com/obolpay/obol/proxy/service"
)

// kickingStore asks the event relay for a pass after every write that
// queued merchant events, so they reach eventsd in milliseconds instead
// of at the relay's next tick. The events are durable in the write's own
// transaction either way; the kick only shortens the wait.
type kickingStore struct {
	service.Store
	kick func()
}

func (s kickingStore) after(err error, events []service.OutboxEntry) error {
	if err != nil {
		return err
	}
	for _, e := range events {
		if e.Merchant != nil {
			s.kick()
			break
		}
	}
	return nil
}

func (s kickingStore) InsertCommit(ctx context.Context, p *service.Payment, events []service.OutboxEntry, now time.Time) error {
	return s.after(s.Store.InsertCommit(ctx, p, events, now), events)
}

func (s kickingStore) Commit(ctx context.Context, p *service.Payment, events []service.OutboxEntry, now time.Time) error {
	return s.after(s.Store.Commit(ctx, p, events, now), events)
}

func (s kickingStore) FinishOperation(ctx context.Context, p *service.Payment, op *service.Operation, events []service.OutboxEntry, now time.Time) error {
	return s.after(s.Store.FinishOperation(ctx, p, op, events, now), events)
}
