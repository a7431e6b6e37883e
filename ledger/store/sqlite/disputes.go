package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/obolpay/obol/internal/sqltime"
	"github.com/obolpay/obol/internal/sqltx"
	"github.com/obolpay/obol/ledger/store"
)

const disputeColumns = `id, payment_id, merchant_id, acquirer, acquirer_reference, amount, fee, currency, reason, status, version, created_at, updated_at`

func scanDispute(r scanner) (store.Dispute, error) {
	var d store.Dispute
	var created, updated string
	err := r.Scan(&d.ID, &d.PaymentID, &d.MerchantID, &d.Acquirer, &d.AcquirerReference, &d.Amount, &d.Fee, &d.Currency, &d.Reason, &d.Status, &d.Version, &created, &updated)
	d.CreatedAt, d.UpdatedAt = parseTime(created), parseTime(updated)
	return d, err
}

func insertEvents(ctx context.Context, tx *sql.Tx, events []store.Event) error {
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_outbox (id, type, merchant_id, object_type, object_id, object_version, data, created_at, next_attempt_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			e.ID, e.Type, e.MerchantID, e.ObjectType, e.ObjectID, e.ObjectVersion, string(e.Data), sqltime.Format(e.CreatedAt), sqltime.Format(e.CreatedAt)); err != nil {
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
	err := sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO disputes (`+disputeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			d.ID, d.PaymentID, d.MerchantID, d.Acquirer, d.AcquirerReference, d.Amount, d.Fee, d.Currency, d.Reason, d.Status, d.Version, sqltime.Format(d.CreatedAt), sqltime.Format(d.UpdatedAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
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
	err := sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE disputes SET status = ?, reason = ?, fee = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?`,
			d.Status, d.Reason, d.Fee, d.Version, sqltime.Format(d.UpdatedAt), d.ID, d.Version-1)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM disputes WHERE id = ?`, d.ID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
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
	d, err := scanDispute(s.db.QueryRowContext(ctx, `SELECT `+disputeColumns+` FROM disputes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, store.ErrNoDispute
	}
	return d, err
}

// ListDisputes lists disputes newest first.
func (s *Store) ListDisputes(ctx context.Context, f store.DisputeFilter) ([]store.Dispute, error) {
	q := `SELECT ` + disputeColumns + ` FROM disputes WHERE 1 = 1`
	var args []any
	if f.MerchantID != "" {
		q += ` AND merchant_id = ?`
		args = append(args, f.MerchantID)
	}
	if f.PaymentID != "" {
		q += ` AND payment_id = ?`
		args = append(args, f.PaymentID)
	}
	if f.After != "" {
		q += ` AND (created_at, id) < (SELECT created_at, id FROM disputes WHERE id = ?)`
		args = append(args, f.After)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.Bounded())
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Dispute
	for rows.Next() {
		d, err := scanDispute(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

const outboxColumns = `seq, id, type, merchant_id, object_type, object_id, object_version, data, created_at, attempts, next_attempt_at, status, last_error`

func scanOutbox(r scanner) (store.OutboxEntry, error) {
	var e store.OutboxEntry
	var data, created, next string
	err := r.Scan(&e.Seq, &e.ID, &e.Type, &e.MerchantID, &e.ObjectType, &e.ObjectID, &e.ObjectVersion, &data, &created, &e.Attempts, &next, &e.Status, &e.LastError)
	e.Data, e.CreatedAt, e.NextAttemptAt = []byte(data), parseTime(created), parseTime(next)
	return e, err
}

func (s *Store) outbox(ctx context.Context, q string, args ...any) ([]store.OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.OutboxEntry
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func bound(limit int) int {
	if limit <= 0 || limit > 1000 {
		return 100
	}
	return limit
}

// DueEvents lists the pending entries due at now.
func (s *Store) DueEvents(ctx context.Context, now time.Time, limit int) ([]store.OutboxEntry, error) {
	return s.outbox(ctx, `SELECT `+outboxColumns+` FROM event_outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY seq LIMIT ?`, sqltime.Format(now), bound(limit))
}

// OutboxEvents lists every entry after seq.
func (s *Store) OutboxEvents(ctx context.Context, afterSeq int64, limit int) ([]store.OutboxEntry, error) {
	return s.outbox(ctx, `SELECT `+outboxColumns+` FROM event_outbox WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, bound(limit))
}

// MarkDelivered marks entries delivered.
func (s *Store) MarkDelivered(ctx context.Context, ids []string) error {
	return sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE event_outbox SET status = 'delivered', attempts = attempts + 1, last_error = '' WHERE id = ?`, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// MarkFailed records a failed attempt.
func (s *Store) MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	st := store.OutboxPending
	if dead {
		st = store.OutboxDead
	}
	_, err := s.db.ExecContext(ctx, `UPDATE event_outbox SET status = ?, attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ? AND status = 'pending'`,
		st, sqltime.Format(next), lastError, id)
	return err
}

// CountOutbox counts entries by state.
func (s *Store) CountOutbox(ctx context.Context) (store.OutboxCounts, error) {
	var c store.OutboxCounts
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(sum(status = 'pending'), 0), COALESCE(sum(status = 'delivered'), 0), COALESCE(sum(status = 'dead'), 0) FROM event_outbox`).
		Scan(&c.Pending, &c.Delivered, &c.Dead)
	return c, err
}

// AddEvents adds events to the outbox.
func (s *Store) AddEvents(ctx context.Context, events ...store.Event) error {
	return sqltx.Run(ctx, s.db, func(tx *sql.Tx) error { return insertEvents(ctx, tx, events) })
}

// parseTime reads a stored timestamp (the zero time if it does not parse:
// the column is written by sqltime.Format only).
func parseTime(v string) time.Time {
	t, _ := sqltime.Parse(v)
	return t
}
