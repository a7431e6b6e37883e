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

const paymentCols = `id, merchant_id, status, amount, amount_captured, amount_refunded, currency, token, acquirer, acquirer_reference, card, risk, decline_code, description, metadata, refunds, fee, created_at, updated_at, version`

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
		string(card), string(risk), p.DeclineCode, p.Description, string(meta), string(refunds), p.Fee, micros(p.CreatedAt), micros(p.UpdatedAt), p.Version}, nil
}

type rowScanner interface{ Scan(...any) error }

func scanPayment(r rowScanner) (*Payment, error) {
	p := &Payment{}
	var card, risk, meta, refunds string
	var created, updated int64
	if err := r.Scan(&p.ID, &p.MerchantID, &p.Status, &p.Amount, &p.AmountCaptured, &p.AmountRefunded, &p.Currency, &p.Token, &p.Acquirer, &p.AcquirerReference,
		&card, &risk, &p.DeclineCode, &p.Description, &meta, &refunds, &p.Fee, &created, &updated, &p.Version); err != nil {
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
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO payments (`+paymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), a...)
	return err
}

// Update writes p if nobody changed it since it was read (version check),
// and bumps its version.
func (s *Store) Update(ctx context.Context, p *Payment) error {
	a, err := s.args(p)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE payments SET status = ?, amount_captured = ?, amount_refunded = ?, acquirer_reference = ?, card = ?, risk = ?,
		decline_code = ?, refunds = ?, fee = ?, updated_at = ?, version = version + 1 WHERE id = ? AND merchant_id = ? AND version = ?`),
		p.Status, p.AmountCaptured, p.AmountRefunded, p.AcquirerReference, a[10], a[11], p.DeclineCode, a[15], p.Fee, micros(p.UpdatedAt), p.ID, p.MerchantID, p.Version)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrConcurrentUpdate
	}
	p.Version++
	return nil
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

// idemStale is how long an unfinished idempotency record blocks retries
// (longer than any request can run; then the first request is taken to
// have died).
const idemStale = 2 * time.Minute

// BeginIdempotent claims (merchant, key) for a request with hash. It
// returns the stored response of a finished first request, or "" when the
// caller owns the key and must Finish or Release it.
func (s *Store) BeginIdempotent(ctx context.Context, merchant, key, hash string, now time.Time) (string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		res, err := s.db.ExecContext(ctx, s.q(`INSERT INTO idempotency_keys (merchant_id, key, request_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`),
			merchant, key, hash, micros(now))
		if err != nil {
			return "", err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return "", nil
		}
		var h, resp string
		var created int64
		err = s.db.QueryRowContext(ctx, s.q(`SELECT request_hash, response, created_at FROM idempotency_keys WHERE merchant_id = ? AND key = ?`), merchant, key).Scan(&h, &resp, &created)
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile
		}
		if err != nil {
			return "", err
		}
		switch {
		case h != hash:
			return "", ErrIdemReused
		case resp != "":
			return resp, nil
		case now.Sub(time.UnixMicro(created)) < idemStale:
			return "", ErrIdemInProgress
		}
		// A stale claim: take it over (compare-and-set on its time).
		res, err = s.db.ExecContext(ctx, s.q(`UPDATE idempotency_keys SET created_at = ? WHERE merchant_id = ? AND key = ? AND created_at = ? AND response = ''`), micros(now), merchant, key, created)
		if err != nil {
			return "", err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return "", nil
		}
	}
	return "", ErrIdemInProgress
}

// FinishIdempotent stores the final response for retries.
func (s *Store) FinishIdempotent(ctx context.Context, merchant, key, response string) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE idempotency_keys SET response = ? WHERE merchant_id = ? AND key = ?`), response, merchant, key)
	return err
}

// ReleaseIdempotent forgets a claim whose request failed retryably (nothing
// was done), so that a retry runs again.
func (s *Store) ReleaseIdempotent(ctx context.Context, merchant, key string) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM idempotency_keys WHERE merchant_id = ? AND key = ? AND response = ''`), merchant, key)
	return err
}

// Processing lists payments left in the processing state since before
// `before` (their request died between the ledger hold and the final write).
func (s *Store) Processing(ctx context.Context, before time.Time, limit int) ([]*Payment, error) {
	return s.payments(ctx, `SELECT `+paymentCols+` FROM payments WHERE status = 'processing' AND updated_at < ? ORDER BY updated_at LIMIT ?`, micros(before), limit)
}

// OutboxEntry is a ledger event waiting for delivery.
type OutboxEntry struct {
	ID, PaymentID, Request string
	Attempts               int64
}

// AddOutbox queues a ledger event (its id is deterministic: queuing twice
// is a no-op).
func (s *Store) AddOutbox(ctx context.Context, id, paymentID, request string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO ledger_outbox (id, payment_id, request, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`), id, paymentID, request, micros(now))
	return err
}

// Outbox lists queued ledger events, oldest first.
func (s *Store) Outbox(ctx context.Context, limit int) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, payment_id, request, attempts FROM ledger_outbox ORDER BY created_at, id LIMIT ?`), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		if err := rows.Scan(&e.ID, &e.PaymentID, &e.Request, &e.Attempts); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// OutboxDone removes a delivered event; OutboxAttempt counts a failed one.
func (s *Store) OutboxDone(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM ledger_outbox WHERE id = ?`), id)
	return err
}

// OutboxAttempt counts a failed delivery.
func (s *Store) OutboxAttempt(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE ledger_outbox SET attempts = attempts + 1 WHERE id = ?`), id)
	return err
}

// SetFee records the fee the ledger took at capture (delivered late).
func (s *Store) SetFee(ctx context.Context, paymentID string, fee int64) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE payments SET fee = ?, version = version + 1 WHERE id = ?`), fee, paymentID)
	return err
}

// DeleteProcessing removes a payment still processing whose acquirer was
// never called (its request failed before; nothing else refers to it).
func (s *Store) DeleteProcessing(ctx context.Context, merchant, id string) error {
	_, err := s.db.ExecContext(ctx, s.q(`DELETE FROM payments WHERE id = ? AND merchant_id = ? AND status = 'processing'`), id, merchant)
	return err
}
