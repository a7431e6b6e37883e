package payments

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/obolpay/obol/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store errors.
var (
	ErrNotFound         = errors.New("no such payment")
	ErrConcurrentUpdate = errors.New("the payment changed concurrently")
	ErrIdemReused       = errors.New("idempotency key reused with another request")
	ErrIdemInProgress   = errors.New("a request with this idempotency key is in progress")
)

// Store keeps payments and idempotency records, on PostgreSQL or SQLite
// (one schema, one code path; only the placeholders differ).
type Store struct {
	db       *sql.DB
	postgres bool
}

// MigrateURL migrates the PostgreSQL database at url.
func MigrateURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return migrate.Postgres(ctx, conn, migrations, "migrations", 727275003)
}

// OpenPostgres migrates and opens the gateway database.
func OpenPostgres(ctx context.Context, url string) (*Store, error) {
	if err := MigrateURL(ctx, url); err != nil {
		return nil, fmt.Errorf("gateway postgres: %w", err)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	return &Store{db: db, postgres: true}, nil
}

// OpenSQLite opens (creating) the embedded default's database.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	db, err := migrate.OpenSQLite(ctx, path, migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Store) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

const paymentCols = `id, merchant_id, status, amount, amount_captured, amount_refunded, currency, token, acquirer, acquirer_reference, card, risk, decline_code, description, metadata, refunds, fee, created_at, updated_at, version, pending_op, compensation`

func micros(t time.Time) int64 { return t.UnixMicro() }

func (s *Store) args(p *Payment) ([]any, error) {
	card, err1 := json.Marshal(p.Card)
	risk, err2 := json.Marshal(p.Risk)
	meta, err3 := json.Marshal(p.Metadata)
	refunds, err4 := json.Marshal(p.Refunds)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	if p.Metadata == nil {
		meta = []byte("{}")
	}
	if p.Refunds == nil {
		refunds = []byte("[]")
	}
	return []any{p.ID, p.MerchantID, p.Status, p.Amount, p.AmountCaptured, p.AmountRefunded, p.Currency, p.Token, p.Acquirer, p.AcquirerReference,
		string(card), string(risk), p.DeclineCode, p.Description, string(meta), string(refunds), p.Fee, micros(p.CreatedAt), micros(p.UpdatedAt), p.Version, p.PendingOp, p.Compensation}, nil
}

type rowScanner interface{ Scan(...any) error }

func scanPayment(r rowScanner) (*Payment, error) {
	p := &Payment{}
	var card, risk, meta, refunds string
	var created, updated int64
	if err := r.Scan(&p.ID, &p.MerchantID, &p.Status, &p.Amount, &p.AmountCaptured, &p.AmountRefunded, &p.Currency, &p.Token, &p.Acquirer, &p.AcquirerReference,
		&card, &risk, &p.DeclineCode, &p.Description, &meta, &refunds, &p.Fee, &created, &updated, &p.Version, &p.PendingOp, &p.Compensation); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	if err := errors.Join(json.Unmarshal([]byte(card), &p.Card), json.Unmarshal([]byte(risk), &p.Risk), json.Unmarshal([]byte(meta), &p.Metadata), json.Unmarshal([]byte(refunds), &p.Refunds)); err != nil {
		return nil, err
	}
	return p, nil
}

// Insert stores a new payment.
func (s *Store) Insert(ctx context.Context, p *Payment) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO payments (`+paymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), a...)
	return err
}

// InsertCommit stores a new payment that is already final (declined by
// risk) with its outbox events, in one transaction.
func (s *Store) InsertCommit(ctx context.Context, p *Payment, events []OutboxEntry, now time.Time) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO payments (`+paymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), a...); err != nil {
			return err
		}
		return s.addOutbox(ctx, tx, events, now)
	})
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Update writes p if nobody changed it since it was read (version check),
// and bumps its version.
func (s *Store) Update(ctx context.Context, p *Payment) error {
	if err := s.update(ctx, s.db, p); err != nil {
		return err
	}
	p.Version++
	return nil
}

func (s *Store) update(ctx context.Context, db execer, p *Payment) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	res, err := db.ExecContext(ctx, s.q(`UPDATE payments SET status = ?, amount_captured = ?, amount_refunded = ?, acquirer_reference = ?, card = ?, risk = ?,
		decline_code = ?, refunds = ?, updated_at = ?, pending_op = ?, compensation = ?, version = version + 1 WHERE id = ? AND merchant_id = ? AND version = ?`),
		p.Status, p.AmountCaptured, p.AmountRefunded, p.AcquirerReference, a[10], a[11], p.DeclineCode, a[15], micros(p.UpdatedAt), p.PendingOp, p.Compensation, p.ID, p.MerchantID, p.Version)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrConcurrentUpdate
	}
	return nil
}

// inTx runs fn in a transaction.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Commit writes p (version check) and queues its ledger events in the
// outbox, in one transaction: a state change and the ledger events it owes
// are durable together.
func (s *Store) Commit(ctx context.Context, p *Payment, events []OutboxEntry, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.update(ctx, tx, p); err != nil {
			return err
		}
		return s.addOutbox(ctx, tx, events, now)
	})
	if err == nil {
		p.Version++
	}
	return err
}

// Get reads a merchant's payment.
func (s *Store) Get(ctx context.Context, merchant, id string) (*Payment, error) {
	p, err := scanPayment(s.db.QueryRowContext(ctx, s.q(`SELECT `+paymentCols+` FROM payments WHERE id = ? AND merchant_id = ?`), id, merchant))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return p, err
}

// ListFilter selects payments.
type ListFilter struct {
	Status        string
	After, Before time.Time
	// Cursor: payments older than (CursorAt, CursorID).
	CursorAt int64
	CursorID string
	Limit    int
}

// List lists a merchant's payments, newest first.
func (s *Store) List(ctx context.Context, merchant string, f ListFilter) ([]*Payment, error) {
	query := `SELECT ` + paymentCols + ` FROM payments WHERE merchant_id = ?`
	args := []any{merchant}
	if f.Status != "" {
		query += ` AND status = ?`
		args = append(args, f.Status)
	}
	if !f.After.IsZero() {
		query += ` AND created_at > ?`
		args = append(args, micros(f.After))
	}
	if !f.Before.IsZero() {
		query += ` AND created_at < ?`
		args = append(args, micros(f.Before))
	}
	if f.CursorID != "" {
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, f.CursorAt, f.CursorAt, f.CursorID)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	return s.payments(ctx, query, args...)
}

// payments runs a query selecting paymentCols.
func (s *Store) payments(ctx context.Context, query string, args ...any) ([]*Payment, error) {
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Claim is a held idempotency lease: Version changes on every takeover, so
// a holder whose lease was taken over can no longer renew, finish or
// release it.
type Claim struct {
	Merchant, Key, Owner string
	Version              int64
}

// BeginIdempotent claims (merchant, key) for a request with hash, for
// owner, until now+lease. It returns the stored response of a finished
// first request, or "" and the claim when the caller owns the key and must
// Finish or Release it. An unfinished claim whose lease expired (its
// holder died or lost the database) is taken over by compare-and-set on
// its lease version, so two processes never both own a key.
func (s *Store) BeginIdempotent(ctx context.Context, merchant, key, hash, owner string, now time.Time, lease time.Duration) (string, Claim, error) {
	c := Claim{Merchant: merchant, Key: key, Owner: owner, Version: 1}
	until := micros(now.Add(lease))
	for attempt := 0; attempt < 3; attempt++ {
		res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO idempotency_keys (merchant_id, key, request_hash, created_at, owner, lease_until, lease_version) VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING`),
			merchant, key, hash, micros(now), owner, until)
		if err != nil {
			return "", Claim{}, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return "", c, nil
		}
		var h, resp string
		var leaseUntil, version int64
		err = s.db.QueryRowContext(ctx, s.q(`SELECT request_hash, response, lease_until, lease_version FROM idempotency_keys WHERE merchant_id = ? AND key = ?`), merchant, key).Scan(&h, &resp, &leaseUntil, &version)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile
		}
		if err != nil {
			return "", Claim{}, err
		}
		switch {
		case h != hash:
			return "", Claim{}, ErrIdemReused
		case resp != "":
			return resp, Claim{}, nil
		case micros(now) < leaseUntil:
			return "", Claim{}, ErrIdemInProgress
		}
		// An expired lease: take it over (compare-and-set on its version).
		res, err = s.db.ExecContext(ctx, s.q(`UPDATE idempotency_keys SET owner = ?, lease_until = ?, lease_version = lease_version + 1 WHERE merchant_id = ? AND key = ? AND lease_version = ? AND response = ''`),
			owner, until, merchant, key, version)
		if err != nil {
			return "", Claim{}, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			c.Version = version + 1
			return "", c, nil
		}
	}
	return "", Claim{}, ErrIdemInProgress
}

// ErrLeaseLost: the idempotency lease was taken over by another process.
var ErrLeaseLost = errors.New("the idempotency lease was taken over")

func leaseResult(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrLeaseLost
	}
	return nil
}

// RenewIdempotent extends a held lease to now+lease (ErrLeaseLost when it
// was taken over).
func (s *Store) RenewIdempotent(ctx context.Context, c Claim, now time.Time, lease time.Duration) error {
	return leaseResult(s.db.ExecContext(ctx, s.q(`UPDATE idempotency_keys SET lease_until = ? WHERE merchant_id = ? AND key = ? AND owner = ? AND lease_version = ? AND response = ''`),
		micros(now.Add(lease)), c.Merchant, c.Key, c.Owner, c.Version))
}

// FinishIdempotent stores the final response for retries, if the claim is
// still held (ErrLeaseLost otherwise: the new holder writes it).
func (s *Store) FinishIdempotent(ctx context.Context, c Claim, response string) error {
	return leaseResult(s.db.ExecContext(ctx, s.q(`UPDATE idempotency_keys SET response = ? WHERE merchant_id = ? AND key = ? AND owner = ? AND lease_version = ? AND response = ''`),
		response, c.Merchant, c.Key, c.Owner, c.Version))
}

// ReleaseIdempotent forgets a held claim whose request failed retryably,
// so that a retry runs again.
func (s *Store) ReleaseIdempotent(ctx context.Context, c Claim) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM idempotency_keys WHERE merchant_id = ? AND key = ? AND owner = ? AND lease_version = ? AND response = ''`), c.Merchant, c.Key, c.Owner, c.Version)
	return err
}

// Processing lists payments left in the processing state since before
// `before` (their request died between the ledger hold and the final write).
func (s *Store) Processing(ctx context.Context, before time.Time, limit int) ([]*Payment, error) {
	return s.payments(ctx, `SELECT `+paymentCols+` FROM payments WHERE status = 'processing' AND updated_at < ? ORDER BY updated_at LIMIT ?`, micros(before), limit)
}

// Outbox states.
const (
	OutboxPending = "pending"
	// OutboxDead: the ledger refused the event for good; it waits for an
	// operator (obol gateway outbox list|retry).
	OutboxDead = "dead"
)

// OutboxEntry is a ledger event waiting for delivery.
type OutboxEntry struct {
	// Merchant, when set, makes this a merchant event (for eventsd, in
	// the event_outbox table) instead of a ledger event.
	Merchant               *MerchantEvent
	ID, PaymentID, Request string
	Attempts               int64
	State, LastError       string
	NextAttemptAt          time.Time
	CreatedAt              time.Time
}

// AddOutbox queues a ledger event (its id is deterministic: queuing twice
// is a no-op).
func (s *Store) AddOutbox(ctx context.Context, id, paymentID, request string, now time.Time) error {
	return s.addOutbox(ctx, s.db, []OutboxEntry{{ID: id, PaymentID: paymentID, Request: request}}, now)
}

func (s *Store) addOutbox(ctx context.Context, db execer, events []OutboxEntry, now time.Time) error {
	for i, e := range events {
		// Events of one commit get increasing times, so created_at orders
		// every payment's events (OlderOutbox).
		at := micros(now) + int64(i)
		if m := e.Merchant; m != nil {
			if _, err := db.ExecContext(ctx, s.q(`INSERT INTO event_outbox (id, type, merchant_id, object_type, object_id, object_version, data, created_at, next_attempt_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), m.ID, m.Type, m.MerchantID, m.ObjectType, m.ObjectID, m.ObjectVersion, string(m.Data), at, at); err != nil {
				return err
			}
			continue
		}
		if _, err := db.ExecContext(ctx, s.q(`INSERT INTO ledger_outbox (id, payment_id, request, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
			e.ID, e.PaymentID, e.Request, at, at); err != nil {
			return err
		}
	}
	return nil
}

// OlderOutbox returns the oldest undelivered event (pending or dead) queued
// for the same payment before the entry id, if any: a payment's events
// reach the ledger in the order they happened (a refund before its
// capture would be refused for good).
func (s *Store) OlderOutbox(ctx context.Context, paymentID, id string) (*OutboxEntry, error) {
	es, err := s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox o
		WHERE o.payment_id = ? AND o.id <> ?
		AND EXISTS (SELECT 1 FROM ledger_outbox e WHERE e.id = ? AND (o.created_at < e.created_at OR (o.created_at = e.created_at AND o.id < e.id)))
		ORDER BY o.created_at, o.id LIMIT 1`, paymentID, id, id)
	if err != nil || len(es) == 0 {
		return nil, err
	}
	return &es[0], nil
}

// OutboxDefer moves an entry's next attempt to at without counting an
// attempt (it waits for an older event of its payment).
func (s *Store) OutboxDefer(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE ledger_outbox SET next_attempt_at = ? WHERE id = ? AND state = 'pending'`), micros(at), id)
	return err
}

const outboxCols = `id, payment_id, request, attempts, state, last_error, next_attempt_at, created_at`

func (s *Store) outbox(ctx context.Context, query string, args ...any) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		var next, created int64
		if err := rows.Scan(&e.ID, &e.PaymentID, &e.Request, &e.Attempts, &e.State, &e.LastError, &next, &created); err != nil {
			return nil, err
		}
		e.NextAttemptAt, e.CreatedAt = time.UnixMicro(next).UTC(), time.UnixMicro(created).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Outbox lists the pending ledger events due at now, the most overdue
// first (dead entries and entries backing off are skipped, so one that
// keeps failing never blocks the others).
func (s *Store) Outbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error) {
	return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, created_at, id LIMIT ?`, micros(now), limit)
}

// OutboxList lists outbox entries in a state ("" for all), oldest first.
func (s *Store) OutboxList(ctx context.Context, state string, limit int) ([]OutboxEntry, error) {
	if state == "" {
		return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox ORDER BY created_at, id LIMIT ?`, limit)
	}
	return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox WHERE state = ? ORDER BY created_at, id LIMIT ?`, state, limit)
}

// OutboxDone removes a delivered event.
func (s *Store) OutboxDone(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM ledger_outbox WHERE id = ?`), id)
	return err
}

// OutboxAttempt counts a failed delivery and sets when to try again.
func (s *Store) OutboxAttempt(ctx context.Context, id, code string, next time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE ledger_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?`), code, micros(next), id)
	return err
}

// OutboxDeadLetter marks an event the ledger refused for good.
func (s *Store) OutboxDeadLetter(ctx context.Context, id, code string) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE ledger_outbox SET attempts = attempts + 1, last_error = ?, state = 'dead' WHERE id = ?`), code, id)
	return err
}

// OutboxRetry makes dead entries pending again, due now: the one named, or
// every dead one when id is "". It returns how many.
func (s *Store) OutboxRetry(ctx context.Context, id string, now time.Time) (int64, error) {
	q, args := `UPDATE ledger_outbox SET state = 'pending', attempts = 0, next_attempt_at = ? WHERE state = 'dead'`, []any{micros(now)}
	if id != "" {
		q, args = q+` AND id = ?`, append(args, id)
	}
	res, err := s.db.ExecContext(ctx, s.q(q), args...)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Operation kinds and states.
const (
	OpCapture = "capture"
	OpCancel  = "cancel"
	OpRefund  = "refund"

	OpProcessing = "processing"
	OpSucceeded  = "succeeded"
	OpFailed     = "failed"
)

// Operation is a capture, cancel or refund of a payment, stored before the
// acquirer is called.
type Operation struct {
	ID, PaymentID, MerchantID, Kind string
	Amount                          int64
	Reason, State, ErrorCode        string
	// RequestHash identifies the request that started it (a retry with
	// the same Idempotency-Key and another body is refused).
	RequestHash          string
	CreatedAt, UpdatedAt time.Time
}

const opCols = `id, payment_id, merchant_id, kind, amount, reason, request_hash, state, error_code, created_at, updated_at`

func scanOp(r rowScanner) (*Operation, error) {
	o := &Operation{}
	var created, updated int64
	if err := r.Scan(&o.ID, &o.PaymentID, &o.MerchantID, &o.Kind, &o.Amount, &o.Reason, &o.RequestHash, &o.State, &o.ErrorCode, &created, &updated); err != nil {
		return nil, err
	}
	o.CreatedAt, o.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	return o, nil
}

// ErrNoOperation: no such operation.
var ErrNoOperation = errors.New("no such operation")

// Operation reads an operation.
func (s *Store) Operation(ctx context.Context, id string) (*Operation, error) {
	o, err := scanOp(s.db.QueryRowContext(ctx, s.q(`SELECT `+opCols+` FROM payment_operations WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoOperation
	}
	return o, err
}

// StartOperation stores op as processing and marks it in flight on p (one
// operation at a time per payment), in one transaction with p's version
// check.
func (s *Store) StartOperation(ctx context.Context, p *Payment, op *Operation) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO payment_operations (`+opCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			op.ID, op.PaymentID, op.MerchantID, op.Kind, op.Amount, op.Reason, op.RequestHash, op.State, op.ErrorCode, micros(op.CreatedAt), micros(op.UpdatedAt)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE payments SET pending_op = ?, version = version + 1 WHERE id = ? AND merchant_id = ? AND version = ? AND pending_op = ''`), op.ID, p.ID, p.MerchantID, p.Version)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrConcurrentUpdate
		}
		return nil
	})
	if err == nil {
		p.Version++
		p.PendingOp = op.ID
	}
	return err
}

// TouchOperation claims a processing operation for a resumption by moving
// its updated_at from prev to now (compare-and-set): the sweeper leaves
// it alone for another processing timeout, and of two resumers racing, one
// wins.
func (s *Store) TouchOperation(ctx context.Context, op *Operation, now time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE payment_operations SET updated_at = ? WHERE id = ? AND state = 'processing' AND updated_at = ?`), micros(now), op.ID, micros(op.UpdatedAt))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrConcurrentUpdate
	}
	op.UpdatedAt = time.UnixMicro(micros(now)).UTC()
	return nil
}

// FinishOperation ends a processing operation (state and error code set
// on op), writes p (its pending_op cleared by the caller; version check)
// and queues the ledger events, in one transaction.
func (s *Store) FinishOperation(ctx context.Context, p *Payment, op *Operation, events []OutboxEntry, now time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE payment_operations SET state = ?, error_code = ?, updated_at = ? WHERE id = ? AND state = 'processing'`), op.State, op.ErrorCode, micros(now), op.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrConcurrentUpdate
		}
		if err := s.update(ctx, tx, p); err != nil {
			return err
		}
		return s.addOutbox(ctx, tx, events, now)
	})
	if err == nil {
		p.Version++
	}
	return err
}

// StaleOperations lists operations processing since before `before`
// (their request died or timed out).
func (s *Store) StaleOperations(ctx context.Context, before time.Time, limit int) ([]*Operation, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+opCols+` FROM payment_operations WHERE state = 'processing' AND updated_at < ? ORDER BY updated_at LIMIT ?`), micros(before), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Operation
	for rows.Next() {
		o, err := scanOp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Compensating lists final payments that still owe an undo step (a
// reversal, a hold release), last changed before `before`.
func (s *Store) Compensating(ctx context.Context, before time.Time, limit int) ([]*Payment, error) {
	return s.payments(ctx, `SELECT `+paymentCols+` FROM payments WHERE compensation <> '' AND updated_at < ? ORDER BY updated_at LIMIT ?`, micros(before), limit)
}

// SetFee records the fee the ledger took at capture. Only the ledger's
// answer sets it (Update never writes fee), so it does not bump the
// version: it races with no state change.
func (s *Store) SetFee(ctx context.Context, paymentID string, fee int64) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE payments SET fee = ? WHERE id = ?`), fee, paymentID)
	return err
}

// ClearCompensation records that the compensation steps `was` are done,
// leaving `left` (compare-and-set on the steps, so two sweepers agree).
func (s *Store) ClearCompensation(ctx context.Context, p *Payment, was, left string) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE payments SET compensation = ? WHERE id = ? AND merchant_id = ? AND compensation = ?`), left, p.ID, p.MerchantID, was)
	return err
}

// DeleteProcessing removes a payment still processing whose acquirer was
// never called (its request failed before; nothing else refers to it).
func (s *Store) DeleteProcessing(ctx context.Context, merchant, id string) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM payments WHERE id = ? AND merchant_id = ? AND status = 'processing'`), id, merchant)
	return err
}
