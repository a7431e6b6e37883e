// Package store is the gateway's payment store (service.Store) over
// database/sql: one schema and one SQL text for PostgreSQL and SQLite, both
// of whose drivers take $n placeholders natively. The postgres and sqlite
// packages open it on their backend; storetest is the conformance suite
// both run. No card data: a payment holds its token and PAN-free card
// metadata (brand, last4, fingerprint) only. PCI zone (the gateway's).
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/obolpay/obol/internal/batch"
	"github.com/obolpay/obol/internal/sqltx"
	"github.com/obolpay/obol/proxy/service"
)

// Migrations is the schema, one file per version for both backends
// (portable types; times are Unix microseconds).
//
//go:embed migrations/*.sql
var Migrations embed.FS

var _ service.Store = (*Store)(nil)

// Store is the payment store on an open, migrated database.
type Store struct {
	db *sql.DB

	// writes groups the durable writes of concurrent requests (the
	// payment path's, and the bookkeeping of delivered ledger events) into
	// shared transactions (writer.go); started on first use (a read-only
	// store never writes).
	writesOnce sync.Once
	writes     *batch.Batcher[write]
	// rolledBack reports whether a failed COMMIT is known to have rolled
	// back (the database answered with an error), so that the batch's
	// writes may run again one by one; nil: a failed COMMIT is ambiguous.
	rolledBack func(error) bool
	// pipelined: the database is PostgreSQL through pgx, and a batch's
	// writes run as pipelined statements (pipeline.go).
	pipelined bool
}

// New wraps an open, migrated database (the postgres and sqlite packages
// open it).
func New(db *sql.DB) *Store { return &Store{db: db} }

// NewRolledBack is New for a database whose failed COMMIT answers tell
// whether the transaction is known to be rolled back (rolledBack).
func NewRolledBack(db *sql.DB, rolledBack func(error) bool) *Store {
	return &Store{db: db, rolledBack: rolledBack}
}

// NewPipelined is NewRolledBack for a PostgreSQL database opened through
// pgx's database/sql adapter: a batch of writes runs in pipelines (a few
// round trips per batch, pipeline.go).
func NewPipelined(db *sql.DB, rolledBack func(error) bool) *Store {
	return &Store{db: db, rolledBack: rolledBack, pipelined: true}
}

// Close stops the writers (what they hold is written first) and closes
// the database.
func (s *Store) Close() error {
	s.writesOnce.Do(func() {}) // no writer starts after Close
	if s.writes != nil {
		s.writes.Close()
	}
	return s.db.Close()
}

// Ping checks the database.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

const paymentCols = `id, merchant_id, status, amount, amount_captured, amount_refunded, currency, token, acquirer, acquirer_reference, card, risk, decline_code, description, metadata, refunds, fee, created_at, updated_at, version, pending_op, compensation`

func micros(t time.Time) int64 { return t.UnixMicro() }

func (s *Store) args(p *service.Payment) ([]any, error) {
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

func scanPayment(r rowScanner) (*service.Payment, error) {
	p := &service.Payment{}
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

// errDuplicatePayment: a payment with this id exists.
var errDuplicatePayment = errors.New("gateway store: a payment with this id exists")

// insertPayment inserts p (clean errDuplicatePayment when its id exists:
// nothing was written).
func insertPayment(ctx context.Context, tx *sql.Tx, a []any) (clean bool, err error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO payments (`+paymentCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) ON CONFLICT DO NOTHING`, a...)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return true, errDuplicatePayment
	}
	return true, nil
}

// Insert stores a new payment, durable when it returns (group commit).
func (s *Store) Insert(ctx context.Context, p *service.Payment) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	return s.writePG(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		return insertPayment(ctx, tx, a)
	}, pgInsert(a, nil, time.Time{}))
}

// InsertCommit stores a new payment that is already final (declined by
// risk) with its outbox events, in one transaction (group commit).
func (s *Store) InsertCommit(ctx context.Context, p *service.Payment, events []service.OutboxEntry, now time.Time) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	return s.writePG(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if clean, err := insertPayment(ctx, tx, a); err != nil {
			return clean, err
		}
		return false, s.addOutbox(ctx, tx, events, now)
	}, pgInsert(a, events, now))
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Update writes p if nobody changed it since it was read (version check),
// and bumps its version. The fee is written only when p carries one: the
// fee is set once, by the write that learned it from the ledger, and the
// sweeper's OutboxDoneFee does not move the version, so a write of a
// payment read before it must not put a zero back.
func (s *Store) Update(ctx context.Context, p *service.Payment) error {
	if err := s.update(ctx, s.db, p); err != nil {
		return err
	}
	p.Version++
	return nil
}

func (s *Store) update(ctx context.Context, db execer, p *service.Payment) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	res, err := db.ExecContext(ctx, `UPDATE payments SET status = $1, amount_captured = $2, amount_refunded = $3, acquirer_reference = $4, card = $5, risk = $6,
		decline_code = $7, refunds = $8, updated_at = $9, pending_op = $10, compensation = $11, fee = CASE WHEN CAST($15 AS BIGINT) = 0 THEN fee ELSE CAST($15 AS BIGINT) END, version = version + 1
		WHERE id = $12 AND merchant_id = $13 AND version = $14`,
		p.Status, p.AmountCaptured, p.AmountRefunded, p.AcquirerReference, a[10], a[11], p.DeclineCode, a[15], micros(p.UpdatedAt), p.PendingOp, p.Compensation, p.ID, p.MerchantID, p.Version, p.Fee)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return service.ErrConcurrentUpdate
	}
	return nil
}

// Commit writes p (version check) and queues its ledger events in the
// outbox, in one transaction: a state change and the ledger events it owes
// are durable together.
func (s *Store) Commit(ctx context.Context, p *service.Payment, events []service.OutboxEntry, now time.Time) error {
	return s.commit(ctx, p, events, now, nil)
}

// commit runs first (when not nil), writes p (version check) and queues
// events, in one transaction (group commit), and bumps p's version once
// it committed.
func (s *Store) commit(ctx context.Context, p *service.Payment, events []service.OutboxEntry, now time.Time, op *service.Operation) error {
	w, err := s.commitWrite(p, events, now, op)
	if err != nil {
		return err
	}
	err = s.writer().Do(ctx, w)
	if err == nil {
		p.Version++
	}
	return err
}

// commitWrite is commit's write: op's finish (when not nil), p's update,
// the events. The finish and the version check refuse before they change
// anything (ErrConcurrentUpdate); only a refusal after the finish changed
// something rolls the shared transaction back.
func (s *Store) commitWrite(p *service.Payment, events []service.OutboxEntry, now time.Time, op *service.Operation) (write, error) {
	var first writeFunc
	if op != nil {
		first = finishOp(op, now)
	}
	pg, err := s.pgCommit(p, events, now, op)
	if err != nil {
		return write{}, err
	}
	return write{pg: pg, fn: func(ctx context.Context, tx *sql.Tx) (bool, error) {
		clean := true
		if first != nil {
			c, err := first(ctx, tx)
			if err != nil {
				return c, err
			}
			clean = false
		}
		if err := s.update(ctx, tx, p); err != nil {
			return clean && errors.Is(err, service.ErrConcurrentUpdate), err
		}
		return false, s.addOutbox(ctx, tx, events, now)
	}}, nil
}

// Get reads a merchant's payment.
func (s *Store) Get(ctx context.Context, merchant, id string) (*service.Payment, error) {
	p, err := scanPayment(s.db.QueryRowContext(ctx, `SELECT `+paymentCols+` FROM payments WHERE id = $1 AND merchant_id = $2`, id, merchant))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, service.ErrNotFound
	}
	return p, err
}

// List lists a merchant's payments, newest first.
func (s *Store) List(ctx context.Context, merchant string, f service.ListFilter) ([]*service.Payment, error) {
	var a params
	query := `SELECT ` + paymentCols + ` FROM payments WHERE merchant_id = ` + a.add(merchant)
	if f.Status != "" {
		query += ` AND status = ` + a.add(f.Status)
	}
	if !f.After.IsZero() {
		query += ` AND created_at > ` + a.add(micros(f.After))
	}
	if !f.Before.IsZero() {
		query += ` AND created_at < ` + a.add(micros(f.Before))
	}
	if f.CursorID != "" {
		at := a.add(f.CursorAt)
		query += ` AND (created_at < ` + at + ` OR (created_at = ` + at + ` AND id < ` + a.add(f.CursorID) + `))`
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ` + a.add(f.Limit)
	return s.listPayments(ctx, query, a...)
}

// params are the arguments of a query built piece by piece.
type params []any

// add appends v and returns its placeholder.
func (a *params) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// listPayments runs a query selecting paymentCols.
func (s *Store) listPayments(ctx context.Context, query string, args ...any) ([]*service.Payment, error) {
	return queryAll(ctx, s.db, scanPayment, query, args...)
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// BeginIdempotent claims (merchant, key) for a request with hash, for
// owner, until now+lease. It returns the stored response of a finished
// first request, or "" and the claim when the caller owns the key and must
// Finish or Release it. An unfinished claim whose lease expired (its
// holder died or lost the database) is taken over by compare-and-set on
// its lease version, so two processes never both own a key.
func (s *Store) BeginIdempotent(ctx context.Context, merchant, key, hash, owner string, now time.Time, lease time.Duration) (string, service.Claim, error) {
	c := service.Claim{Merchant: merchant, Key: key, Owner: owner, Version: 1}
	until := micros(now.Add(lease))
	for attempt := 0; attempt < 3; attempt++ {
		res, err := s.db.ExecContext(ctx, `INSERT INTO idempotency_keys (merchant_id, key, request_hash, created_at, owner, lease_until, lease_version) VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT DO NOTHING`,
			merchant, key, hash, micros(now), owner, until)
		if err != nil {
			return "", service.Claim{}, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return "", c, nil
		}
		var h, resp string
		var leaseUntil, version int64
		err = s.db.QueryRowContext(ctx, `SELECT request_hash, response, lease_until, lease_version FROM idempotency_keys WHERE merchant_id = $1 AND key = $2`, merchant, key).Scan(&h, &resp, &leaseUntil, &version)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile
		}
		if err != nil {
			return "", service.Claim{}, err
		}
		switch {
		case h != hash:
			return "", service.Claim{}, service.ErrIdemReused
		case resp != "":
			return resp, service.Claim{}, nil
		case micros(now) < leaseUntil:
			return "", service.Claim{}, service.ErrIdemInProgress
		}
		// An expired lease: take it over (compare-and-set on its version).
		res, err = s.db.ExecContext(ctx, `UPDATE idempotency_keys SET owner = $1, lease_until = $2, lease_version = lease_version + 1 WHERE merchant_id = $3 AND key = $4 AND lease_version = $5 AND response = ''`,
			owner, until, merchant, key, version)
		if err != nil {
			return "", service.Claim{}, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			c.Version = version + 1
			return "", c, nil
		}
	}
	return "", service.Claim{}, service.ErrIdemInProgress
}

func leaseResult(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return service.ErrLeaseLost
	}
	return nil
}

// RenewIdempotent extends a held lease to now+lease (service.ErrLeaseLost when it
// was taken over).
func (s *Store) RenewIdempotent(ctx context.Context, c service.Claim, now time.Time, lease time.Duration) error {
	return leaseResult(s.db.ExecContext(ctx, `UPDATE idempotency_keys SET lease_until = $1 WHERE merchant_id = $2 AND key = $3 AND owner = $4 AND lease_version = $5 AND response = ''`,
		micros(now.Add(lease)), c.Merchant, c.Key, c.Owner, c.Version))
}

// FinishIdempotent stores the final response for retries, if the claim is
// still held (service.ErrLeaseLost otherwise: the new holder writes it).
func (s *Store) FinishIdempotent(ctx context.Context, c service.Claim, response string) error {
	return leaseResult(s.db.ExecContext(ctx, `UPDATE idempotency_keys SET response = $1 WHERE merchant_id = $2 AND key = $3 AND owner = $4 AND lease_version = $5 AND response = ''`,
		response, c.Merchant, c.Key, c.Owner, c.Version))
}

// ReleaseIdempotent forgets a held claim whose request failed retryably,
// so that a retry runs again.
func (s *Store) ReleaseIdempotent(ctx context.Context, c service.Claim) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND owner = $3 AND lease_version = $4 AND response = ''`, c.Merchant, c.Key, c.Owner, c.Version)
	return err
}

// Processing lists payments left in the processing state since before
// `before` (their request died between the ledger hold and the final write).
func (s *Store) Processing(ctx context.Context, before time.Time, limit int) ([]*service.Payment, error) {
	return s.listPayments(ctx, `SELECT `+paymentCols+` FROM payments WHERE status = 'processing' AND updated_at < $1 ORDER BY updated_at LIMIT $2`, micros(before), limit)
}

// AddOutbox queues a ledger event (its id is deterministic: queuing twice
// is a no-op).
func (s *Store) AddOutbox(ctx context.Context, id, paymentID, request string, now time.Time) error {
	return s.addOutbox(ctx, s.db, []service.OutboxEntry{{ID: id, PaymentID: paymentID, Request: request}}, now)
}

func (s *Store) addOutbox(ctx context.Context, db execer, events []service.OutboxEntry, now time.Time) error {
	for i, e := range events {
		// Events of one commit get increasing times, so created_at orders
		// every payment's events (OlderOutbox).
		at := micros(now) + int64(i)
		if m := e.Merchant; m != nil {
			if _, err := db.ExecContext(ctx, `INSERT INTO event_outbox (id, type, merchant_id, object_type, object_id, object_version, data, created_at, next_attempt_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`, m.ID, m.Type, m.MerchantID, m.ObjectType, m.ObjectID, m.ObjectVersion, string(m.Data), at, at); err != nil {
				return err
			}
			continue
		}
		res, err := db.ExecContext(ctx, `INSERT INTO ledger_outbox (id, payment_id, request, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
			e.ID, e.PaymentID, e.Request, at, at)
		if err != nil {
			return err
		}
		events[i].First = false
		if tx, ok := db.(*sql.Tx); ok {
			if n, _ := res.RowsAffected(); n == 1 {
				// In the transaction that queued it (the same order as
				// OlderOutbox), so that its delivery need not ask again.
				var older bool
				if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM ledger_outbox WHERE payment_id = $1 AND id <> $2 AND (created_at < $3 OR (created_at = $3 AND id < $2)))`,
					e.PaymentID, e.ID, at).Scan(&older); err != nil {
					return err
				}
				events[i].First = !older
			}
		}
	}
	return nil
}

// OlderOutbox returns the oldest undelivered event (pending or dead) queued
// for the same payment before the entry id, if any: a payment's events
// reach the ledger in the order they happened (a refund before its
// capture would be refused for good).
func (s *Store) OlderOutbox(ctx context.Context, paymentID, id string) (*service.OutboxEntry, error) {
	es, err := s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox o
		WHERE o.payment_id = $1 AND o.id <> $2
		AND EXISTS (SELECT 1 FROM ledger_outbox e WHERE e.id = $3 AND (o.created_at < e.created_at OR (o.created_at = e.created_at AND o.id < e.id)))
		ORDER BY o.created_at, o.id LIMIT 1`, paymentID, id, id)
	if err != nil || len(es) == 0 {
		return nil, err
	}
	return &es[0], nil
}

// OutboxDefer moves an entry's next attempt to at without counting an
// attempt (it waits for an older event of its payment).
func (s *Store) OutboxDefer(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE ledger_outbox SET next_attempt_at = $1 WHERE id = $2 AND state = 'pending'`, micros(at), id)
	return err
}

const outboxCols = `id, payment_id, request, attempts, state, last_error, next_attempt_at, created_at`

func (s *Store) outbox(ctx context.Context, query string, args ...any) ([]service.OutboxEntry, error) {
	return queryAll(ctx, s.db, scanOutbox, query, args...)
}

func scanOutbox(r rowScanner) (service.OutboxEntry, error) {
	var e service.OutboxEntry
	var next, created int64
	if err := r.Scan(&e.ID, &e.PaymentID, &e.Request, &e.Attempts, &e.State, &e.LastError, &next, &created); err != nil {
		return e, err
	}
	e.NextAttemptAt, e.CreatedAt = time.UnixMicro(next).UTC(), time.UnixMicro(created).UTC()
	return e, nil
}

// Outbox lists the pending ledger events due at now, the most overdue
// first (dead entries and entries backing off are skipped, so one that
// keeps failing never blocks the others).
func (s *Store) Outbox(ctx context.Context, now time.Time, limit int) ([]service.OutboxEntry, error) {
	return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, created_at, id LIMIT $2`, micros(now), limit)
}

// OutboxList lists outbox entries in a state ("" for all), oldest first.
func (s *Store) OutboxList(ctx context.Context, state string, limit int) ([]service.OutboxEntry, error) {
	if state == "" {
		return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox ORDER BY created_at, id LIMIT $1`, limit)
	}
	return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox WHERE state = $1 ORDER BY created_at, id LIMIT $2`, state, limit)
}

// OutboxDone removes a delivered event (in a transaction shared with
// concurrent writes: group commit).
func (s *Store) OutboxDone(ctx context.Context, id string) error {
	const q = `DELETE FROM ledger_outbox WHERE id = $1`
	return s.writePG(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, q, id)
		return false, err
	}, &pgWrite{stmt: func(pgx.Row) (string, []any, bool, error) { return q, []any{id}, true, nil }})
}

// OutboxDoneFee records the fee the ledger took at capture (as SetFee)
// and removes the delivered capture event, in one transaction (shared with
// concurrent writes). Both are idempotent: a delivery whose bookkeeping
// failed is delivered again (a replay at the ledger) and recorded then.
func (s *Store) OutboxDoneFee(ctx context.Context, id, paymentID string, fee int64) error {
	return s.writePG(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if _, err := tx.ExecContext(ctx, `UPDATE payments SET fee = $1 WHERE id = $2`, fee, paymentID); err != nil {
			return false, err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM ledger_outbox WHERE id = $1`, id)
		return false, err
	}, &pgWrite{stmt: func(pgx.Row) (string, []any, bool, error) {
		return `WITH f AS (UPDATE payments SET fee = $1 WHERE id = $2) DELETE FROM ledger_outbox WHERE id = $3`, []any{fee, paymentID, id}, true, nil
	}})
}

// OutboxAttempt counts a failed delivery and sets when to try again.
func (s *Store) OutboxAttempt(ctx context.Context, id, code string, next time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE ledger_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3`, code, micros(next), id)
	return err
}

// OutboxDeadLetter marks an event the ledger refused for good.
func (s *Store) OutboxDeadLetter(ctx context.Context, id, code string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE ledger_outbox SET attempts = attempts + 1, last_error = $1, state = 'dead' WHERE id = $2`, code, id)
	return err
}

// OutboxRetry makes dead entries pending again, due now: the one named, or
// every dead one when id is "". It returns how many.
func (s *Store) OutboxRetry(ctx context.Context, id string, now time.Time) (int64, error) {
	var a params
	q := `UPDATE ledger_outbox SET state = 'pending', attempts = 0, next_attempt_at = ` + a.add(micros(now)) + ` WHERE state = 'dead'`
	if id != "" {
		q += ` AND id = ` + a.add(id)
	}
	res, err := s.db.ExecContext(ctx, q, a...)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, nil
}

const opCols = `id, payment_id, merchant_id, kind, amount, reason, request_hash, state, error_code, created_at, updated_at`

func scanOp(r rowScanner) (*service.Operation, error) {
	o := &service.Operation{}
	var created, updated int64
	if err := r.Scan(&o.ID, &o.PaymentID, &o.MerchantID, &o.Kind, &o.Amount, &o.Reason, &o.RequestHash, &o.State, &o.ErrorCode, &created, &updated); err != nil {
		return nil, err
	}
	o.CreatedAt, o.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	return o, nil
}

// service.Operation reads an operation.
func (s *Store) Operation(ctx context.Context, id string) (*service.Operation, error) {
	o, err := scanOp(s.db.QueryRowContext(ctx, `SELECT `+opCols+` FROM payment_operations WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, service.ErrNoOperation
	}
	return o, err
}

// StartOperation stores op as processing and marks it in flight on p (one
// operation at a time per payment), in one transaction with p's version
// check (group commit).
func (s *Store) StartOperation(ctx context.Context, p *service.Payment, op *service.Operation) error {
	q, a := pgStartOperation(p, op)
	err := s.writePG(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		return startOperation(ctx, tx, p, op)
	}, &pgWrite{stmt: func(pgx.Row) (string, []any, bool, error) { return q, a, true, nil }, check: checkStarted})
	if err == nil {
		p.Version++
		p.PendingOp = op.ID
	}
	return err
}

// startOperation marks op in flight on p (version check first: a refusal
// changes nothing) and stores it.
func startOperation(ctx context.Context, tx *sql.Tx, p *service.Payment, op *service.Operation) (clean bool, err error) {
	res, err := tx.ExecContext(ctx, `UPDATE payments SET pending_op = $1, version = version + 1 WHERE id = $2 AND merchant_id = $3 AND version = $4 AND pending_op = ''`, op.ID, p.ID, p.MerchantID, p.Version)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return true, service.ErrConcurrentUpdate
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payment_operations (`+opCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		op.ID, op.PaymentID, op.MerchantID, op.Kind, op.Amount, op.Reason, op.RequestHash, op.State, op.ErrorCode, micros(op.CreatedAt), micros(op.UpdatedAt)); err != nil {
		return false, err
	}
	return false, nil
}

// StartOperationFor reads a merchant's payment, asks plan for the
// operation to start on it, and stores that operation as processing, in
// flight on the payment, in one transaction (group commit) with the
// payment's version check: the read costs no transaction of its own.
// ErrNotFound for no such payment; plan's error as it returned it (nothing
// is written); ErrConcurrentUpdate when the payment changed after the read.
// plan may run more than once (its last answer counts) and must not keep
// state.
func (s *Store) StartOperationFor(ctx context.Context, merchant, id string, plan func(p *service.Payment) (*service.Operation, error)) (*service.Payment, *service.Operation, error) {
	var p *service.Payment
	var op *service.Operation
	if err := s.writer().Do(ctx, startForWrite(merchant, id, plan, &p, &op)); err != nil {
		return nil, nil, err
	}
	p.Version++
	p.PendingOp = op.ID
	return p, op, nil
}

// startForWrite is StartOperationFor's write; it sets *p and *op.
func startForWrite(merchant, id string, plan func(p *service.Payment) (*service.Operation, error), p **service.Payment, op **service.Operation) write {
	read := `SELECT ` + paymentCols + ` FROM payments WHERE id = $1 AND merchant_id = $2`
	return write{fn: func(ctx context.Context, tx *sql.Tx) (bool, error) {
		var err error
		*p, err = scanPayment(tx.QueryRowContext(ctx, read, id, merchant))
		if errors.Is(err, sql.ErrNoRows) {
			return true, service.ErrNotFound
		}
		if err != nil {
			return false, err
		}
		if *op, err = plan(*p); err != nil {
			return true, err
		}
		return startOperation(ctx, tx, *p, *op)
	}, pg: &pgWrite{read: read, readArgs: []any{id, merchant}, check: checkStarted,
		stmt: func(row pgx.Row) (string, []any, bool, error) {
			var err error
			*p, err = scanPayment(row)
			if errors.Is(err, pgx.ErrNoRows) {
				return "", nil, true, service.ErrNotFound
			}
			if err != nil {
				return "", nil, false, err
			}
			if *op, err = plan(*p); err != nil {
				return "", nil, true, err
			}
			q, a := pgStartOperation(*p, *op)
			return q, a, true, nil
		}}}
}

// TouchOperation claims a processing operation for a resumption by moving
// its updated_at from prev to now (compare-and-set): the sweeper leaves
// it alone for another processing timeout, and of two resumers racing, one
// wins. The state is a parameter, here and in the finish, so that a
// generic plan cannot use the in-flight operations' partial index
// (payment_operations_processing) for a lookup by id: made on a table not
// yet analyzed, such a plan scanned every entry of that index, dead ones
// included, on each call.
func (s *Store) TouchOperation(ctx context.Context, op *service.Operation, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE payment_operations SET updated_at = $1 WHERE id = $2 AND state = $4 AND updated_at = $3`, micros(now), op.ID, micros(op.UpdatedAt), service.OpProcessing)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return service.ErrConcurrentUpdate
	}
	op.UpdatedAt = time.UnixMicro(micros(now)).UTC()
	return nil
}

// FinishOperation ends a processing operation (state and error code set
// on op), writes p (its pending_op cleared by the caller; version check)
// and queues the ledger events, in one transaction.
func (s *Store) FinishOperation(ctx context.Context, p *service.Payment, op *service.Operation, events []service.OutboxEntry, now time.Time) error {
	return s.commit(ctx, p, events, now, op)
}

// finishOp ends a processing operation (compare-and-set on its state: a
// refusal changes nothing).
func finishOp(op *service.Operation, now time.Time) writeFunc {
	return func(ctx context.Context, tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `UPDATE payment_operations SET state = $1, error_code = $2, updated_at = $3 WHERE id = $4 AND state = $5`, op.State, op.ErrorCode, micros(now), op.ID, service.OpProcessing)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return true, service.ErrConcurrentUpdate
		}
		return false, nil
	}
}

// StaleOperations lists operations processing since before `before`
// (their request died or timed out).
func (s *Store) StaleOperations(ctx context.Context, before time.Time, limit int) ([]*service.Operation, error) {
	return queryAll(ctx, s.db, scanOp, `SELECT `+opCols+` FROM payment_operations WHERE state = 'processing' AND updated_at < $1 ORDER BY updated_at LIMIT $2`, micros(before), limit)
}

// Compensating lists final payments that still owe an undo step (a
// reversal, a hold release), last changed before `before`.
func (s *Store) Compensating(ctx context.Context, before time.Time, limit int) ([]*service.Payment, error) {
	return s.listPayments(ctx, `SELECT `+paymentCols+` FROM payments WHERE compensation <> '' AND updated_at < $1 ORDER BY updated_at LIMIT $2`, micros(before), limit)
}

// SetFee records the fee the ledger took at capture. Only the ledger's
// answer sets it (Update never writes fee), so it does not bump the
// version: it races with no state change.
func (s *Store) SetFee(ctx context.Context, paymentID string, fee int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE payments SET fee = $1 WHERE id = $2`, fee, paymentID)
	return err
}

// ClearCompensation records that the compensation steps `was` are done,
// leaving `left` (compare-and-set on the steps, so two sweepers agree).
func (s *Store) ClearCompensation(ctx context.Context, p *service.Payment, was, left string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE payments SET compensation = $1 WHERE id = $2 AND merchant_id = $3 AND compensation = $4`, left, p.ID, p.MerchantID, was)
	return err
}

// DeleteProcessing removes a payment still processing whose acquirer was
// never called (its request failed before; nothing else refers to it).
func (s *Store) DeleteProcessing(ctx context.Context, merchant, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM payments WHERE id = $1 AND merchant_id = $2 AND status = 'processing'`, id, merchant)
	return err
}

// PaymentsAfter lists every merchant's payments in id order, after the
// cursor id (at most limit); for the reconciliation with the ledger.
func (s *Store) PaymentsAfter(ctx context.Context, after string, limit int) ([]*service.Payment, error) {
	return s.listPayments(ctx, `SELECT `+paymentCols+` FROM payments WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
}

// OutboxAfter lists the ledger outbox (pending and dead entries) in id
// order, after the cursor id (at most limit); for the reconciliation.
func (s *Store) OutboxAfter(ctx context.Context, after string, limit int) ([]service.OutboxEntry, error) {
	return s.outbox(ctx, `SELECT `+outboxCols+` FROM ledger_outbox WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
}

const eventCols = `id, type, merchant_id, object_type, object_id, object_version, data, created_at, attempts, next_attempt_at, state, last_error`

func scanEvent(r rowScanner) (service.EventEntry, error) {
	var e service.EventEntry
	var data string
	var created, next int64
	if err := r.Scan(&e.ID, &e.Type, &e.MerchantID, &e.ObjectType, &e.ObjectID, &e.ObjectVersion, &data, &created, &e.Attempts, &next, &e.State, &e.LastError); err != nil {
		return e, err
	}
	e.Data, e.CreatedAt, e.NextAttemptAt = []byte(data), time.UnixMicro(created).UTC(), time.UnixMicro(next).UTC()
	return e, nil
}

// Events lists the merchant events of the outbox in a state ("" for
// all), in the order they were written.
func (s *Store) Events(ctx context.Context, state string, limit int) ([]service.EventEntry, error) {
	if state == "" {
		return queryAll(ctx, s.db, scanEvent, `SELECT `+eventCols+` FROM event_outbox ORDER BY created_at, id LIMIT $1`, limit)
	}
	return queryAll(ctx, s.db, scanEvent, `SELECT `+eventCols+` FROM event_outbox WHERE state = $1 ORDER BY created_at, id LIMIT $2`, state, limit)
}

// EventsDue lists the pending merchant events due at now.
func (s *Store) EventsDue(ctx context.Context, now time.Time, limit int) ([]service.EventEntry, error) {
	return queryAll(ctx, s.db, scanEvent, `SELECT `+eventCols+` FROM event_outbox WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY created_at, id LIMIT $2`, micros(now), limit)
}

// EventsDelivered marks merchant events delivered to eventsd.
func (s *Store) EventsDelivered(ctx context.Context, ids []string) error {
	return sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE event_outbox SET state = 'delivered', attempts = attempts + 1, last_error = '' WHERE id = $1`, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// EventFailed records a failed delivery of a pending merchant event.
func (s *Store) EventFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error {
	state := "pending"
	if dead {
		state = "dead"
	}
	_, err := s.db.ExecContext(ctx, `UPDATE event_outbox SET state = $1, attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $4 AND state = 'pending'`,
		state, micros(next), lastError, id)
	return err
}
