package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/ledger/store"
)

const disputeColumns = `id, payment_id, merchant_id, acquirer, acquirer_reference, amount, fee, currency, reason, status, version, created_at, updated_at`

func scanDispute(r pgx.Row) (store.Dispute, error) {
	var d store.Dispute
	err := r.Scan(&d.ID, &d.PaymentID, &d.MerchantID, &d.Acquirer, &d.AcquirerReference, &d.Amount, &d.Fee, &d.Currency, &d.Reason, &d.Status, &d.Version, &d.CreatedAt, &d.UpdatedAt)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return d, err
}

func insertEvents(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	for _, e := range events {
		if _, err := tx.Exec(ctx, `INSERT INTO event_outbox (id, type, merchant_id, object_type, object_id, object_version, data, created_at, next_attempt_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (id) DO NOTHING`,
			e.ID, e.Type, e.MerchantID, e.ObjectType, e.ObjectID, e.ObjectVersion, string(e.Data), e.CreatedAt); err != nil {
			return err
		}
	}
	return nil
}

// CreateDispute stores a new dispute and its events, or returns the stored
// one (a replay).
func (s *Store) CreateDispute(ctx context.Context, d store.Dispute, events ...store.Event) (store.Dispute, bool, error) {
	if err := d.Validate(); err != nil {
		return d, false, err
	}
	d.Version = 1
	if d.CreatedAt.IsZero() {
		d.CreatedAt = s.now()
	}
	d.CreatedAt = d.CreatedAt.UTC().Truncate(time.Microsecond)
	d.UpdatedAt = d.CreatedAt
	created := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO disputes (`+disputeColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
			d.ID, d.PaymentID, d.MerchantID, d.Acquirer, d.AcquirerReference, d.Amount, d.Fee, d.Currency, d.Reason, d.Status, d.Version, d.CreatedAt, d.UpdatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		created = true
		return insertEvents(ctx, tx, events)
	})
	if err != nil {
		return d, false, err
	}
	got, err := s.Dispute(ctx, d.ID)
	return got, created, err
}

// UpdateDispute is a compare-and-set on the dispute's version.
func (s *Store) UpdateDispute(ctx context.Context, d store.Dispute, events ...store.Event) (store.Dispute, error) {
	if err := d.Validate(); err != nil {
		return d, err
	}
	if d.UpdatedAt.IsZero() {
		d.UpdatedAt = s.now()
	}
	d.UpdatedAt = d.UpdatedAt.UTC().Truncate(time.Microsecond)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE disputes SET status = $1, reason = $2, fee = $3, version = $4, updated_at = $5 WHERE id = $6 AND version = $7`,
			d.Status, d.Reason, d.Fee, d.Version, d.UpdatedAt, d.ID, d.Version-1)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1 FROM disputes WHERE id = $1`, d.ID).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNoDispute
			}
			return store.ErrDisputeVersion
		}
		return insertEvents(ctx, tx, events)
	})
	if err != nil {
		return d, err
	}
	return s.Dispute(ctx, d.ID)
}

// Dispute reads a dispute.
func (s *Store) Dispute(ctx context.Context, id string) (store.Dispute, error) {
	d, err := scanDispute(s.pool.QueryRow(ctx, `SELECT `+disputeColumns+` FROM disputes WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, store.ErrNoDispute
	}
	return d, err
}

// ListDisputes lists disputes newest first.
func (s *Store) ListDisputes(ctx context.Context, f store.DisputeFilter) ([]store.Dispute, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+disputeColumns+` FROM disputes
		WHERE ($1 = '' OR merchant_id = $1) AND ($2 = '' OR payment_id = $2)
		  AND ($3 = '' OR (created_at, id) < (SELECT created_at, id FROM disputes WHERE id = $3))
		ORDER BY created_at DESC, id DESC LIMIT $4`, f.MerchantID, f.PaymentID, f.After, f.Bounded())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Dispute, error) { return scanDispute(r) })
}

const outboxColumns = `seq, id, type, merchant_id, object_type, object_id, object_version, data, created_at, attempts, next_attempt_at, status, last_error`

func scanOutbox(r pgx.CollectableRow) (store.OutboxEntry, error) {
	var e store.OutboxEntry
	var data string
	err := r.Scan(&e.Seq, &e.ID, &e.Type, &e.MerchantID, &e.ObjectType, &e.ObjectID, &e.ObjectVersion, &data, &e.CreatedAt, &e.Attempts, &e.NextAttemptAt, &e.Status, &e.LastError)
	e.Data, e.CreatedAt, e.NextAttemptAt = []byte(data), e.CreatedAt.UTC(), e.NextAttemptAt.UTC()
	return e, err
}

func bound(limit int) int {
	if limit <= 0 || limit > 1000 {
		return 100
	}
	return limit
}

// DueEvents lists the pending entries due at now.
func (s *Store) DueEvents(ctx context.Context, now time.Time, limit int) ([]store.OutboxEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+outboxColumns+` FROM event_outbox WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY seq LIMIT $2`, now, bound(limit))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOutbox)
}

// OutboxEvents lists every entry after seq.
func (s *Store) OutboxEvents(ctx context.Context, afterSeq int64, limit int) ([]store.OutboxEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+outboxColumns+` FROM event_outbox WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, bound(limit))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanOutbox)
}

// MarkDelivered marks entries delivered.
func (s *Store) MarkDelivered(ctx context.Context, ids []string) error {
	_, err := s.pool.Exec(ctx, `UPDATE event_outbox SET status = 'delivered', attempts = attempts + 1, last_error = '' WHERE id = ANY($1::text[])`, ids)
	return err
}

// MarkFailed records a failed attempt.
func (s *Store) MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	st := store.OutboxPending
	if dead {
		st = store.OutboxDead
	}
	_, err := s.pool.Exec(ctx, `UPDATE event_outbox SET status = $1, attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $4 AND status = 'pending'`,
		st, next, lastError, id)
	return err
}

// CountOutbox counts entries by state.
func (s *Store) CountOutbox(ctx context.Context) (store.OutboxCounts, error) {
	var c store.OutboxCounts
	err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'dead') FROM event_outbox`).
		Scan(&c.Pending, &c.Delivered, &c.Dead)
	return c, err
}

// AddEvents adds events to the outbox.
func (s *Store) AddEvents(ctx context.Context, events ...store.Event) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return insertEvents(ctx, tx, events) })
}
