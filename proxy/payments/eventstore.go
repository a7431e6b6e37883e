package payments

import (
	"context"
	"database/sql"
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

const eventCols = `id, type, merchant_id, object_type, object_id, object_version, data, created_at, attempts, next_attempt_at, state, last_error`

func (s *Store) eventEntries(ctx context.Context, query string, args ...any) ([]EventEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EventEntry
	for rows.Next() {
		var e EventEntry
		var data string
		var created, next int64
		if err := rows.Scan(&e.ID, &e.Type, &e.MerchantID, &e.ObjectType, &e.ObjectID, &e.ObjectVersion, &data, &created, &e.Attempts, &next, &e.State, &e.LastError); err != nil {
			return nil, err
		}
		e.Data, e.CreatedAt, e.NextAttemptAt = []byte(data), time.UnixMicro(created).UTC(), time.UnixMicro(next).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Events lists the merchant events of the outbox in a state ("" for
// all), in the order they were written.
func (s *Store) Events(ctx context.Context, state string, limit int) ([]EventEntry, error) {
	if state == "" {
		return s.eventEntries(ctx, `SELECT `+eventCols+` FROM event_outbox ORDER BY created_at, id LIMIT ?`, limit)
	}
	return s.eventEntries(ctx, `SELECT `+eventCols+` FROM event_outbox WHERE state = ? ORDER BY created_at, id LIMIT ?`, state, limit)
}

// EventsDue lists the pending merchant events due at now, in the order
// they were written.
func (s *Store) EventsDue(ctx context.Context, now time.Time, limit int) ([]EventEntry, error) {
	return s.eventEntries(ctx, `SELECT `+eventCols+` FROM event_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?`, micros(now), limit)
}

// EventsDelivered marks merchant events delivered to eventsd.
func (s *Store) EventsDelivered(ctx context.Context, ids []string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE event_outbox SET state = 'delivered', attempts = attempts + 1, last_error = '' WHERE id = ?`), id); err != nil {
				return err
			}
		}
		return nil
	})
}

// EventFailed records a failed delivery of a pending merchant event: dead,
// or pending with its next attempt at next.
func (s *Store) EventFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	state := "pending"
	if dead {
		state = "dead"
	}
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE event_outbox SET state = ?, attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ? AND state = 'pending'`),
		state, micros(next), lastError, id)
	return err
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
		out[i] = eventrelay.Entry{ID: e.ID, Type: e.Type, MerchantID: e.MerchantID, ObjectType: e.ObjectType, ObjectID: e.ObjectID,
			ObjectVersion: e.ObjectVersion, Data: e.Data, CreatedAt: e.CreatedAt, Attempts: e.Attempts}
	}
	return out, nil
}

func (o eventOutbox) MarkDelivered(ctx context.Context, ids []string) error { return o.st.EventsDelivered(ctx, ids) }

func (o eventOutbox) MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	return o.st.EventFailed(ctx, id, next, lastError, dead)
}
