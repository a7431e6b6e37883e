// Package store is eventsd's database: the event log, webhook endpoints,
// deliveries and their attempts, on PostgreSQL (production) or SQLite (the
// embedded default of obol dev): one schema and one code path, only the
// placeholders and row locking differ; the same conformance tests run on
// both. Outside PCI scope: events are PAN-free, and endpoint secrets are
// stored sealed by the caller.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/obolpay/obol/internal/batch"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/sqltx"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Errors.
var (
	ErrNotFound = errors.New("not found")
	// ErrEventConflict: an event id was published before with other content.
	ErrEventConflict = errors.New("event id already published with other content")
	// ErrConcurrentUpdate: the endpoint changed since it was read.
	ErrConcurrentUpdate = errors.New("the endpoint changed concurrently")
)

// Endpoint statuses and delivery statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"

	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// Event is an immutable, PAN-free record of an object's state change.
type Event struct {
	ID            string
	MerchantID    string
	Type          string
	CreatedAt     time.Time
	ObjectType    string
	ObjectID      string
	ObjectVersion int64
	// Data is one JSON object.
	Data json.RawMessage
}

func (e *Event) hash() string {
	h := sha256.New()
	for _, s := range []string{e.MerchantID, e.Type, strconv.FormatInt(e.CreatedAt.UnixMicro(), 10), e.ObjectType, e.ObjectID, strconv.FormatInt(e.ObjectVersion, 10), string(e.Data)} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Endpoint is a merchant's webhook endpoint. Secret and PrevSecret are
// sealed by the caller (the store never sees them in clear).
type Endpoint struct {
	ID                  string
	MerchantID          string
	URL                 string
	Types               []string
	Description         string
	Status              string
	DisabledReason      string
	Secret              string
	PrevSecret          string
	PrevSecretExpiresAt time.Time
	CreatedAt           time.Time
	UpdatedAt           time.Time
	Version             int64
}

// Wants reports whether the endpoint subscribes to the event type.
func (e *Endpoint) Wants(eventType string) bool {
	return slices.Contains(e.Types, "*") || slices.Contains(e.Types, eventType)
}

// Delivery is an event's delivery to one endpoint.
type Delivery struct {
	ID            string
	EventID       string
	EndpointID    string
	MerchantID    string
	Status        string
	Attempts      int
	NextAttemptAt time.Time
	LeaseOwner    string
	LeaseUntil    time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Attempt is one POST of a delivery.
type Attempt struct {
	ID             string
	DeliveryID     string
	EventID        string
	EndpointID     string
	Attempt        int
	StartedAt      time.Time
	ResponseStatus int
	Latency        time.Duration
	Error          string
	Succeeded      bool
}

// Leased is a delivery leased for one attempt, with its event and endpoint.
type Leased struct {
	Delivery Delivery
	Event    Event
	Endpoint Endpoint
}

// Store is eventsd's database.
type Store struct {
	db       *sql.DB
	postgres bool
	// finish records attempts in group commits: concurrent workers share
	// one transaction (and one fsync) instead of one each.
	finish *batch.Batcher[finishItem]
}

func newStore(db *sql.DB, postgres bool) *Store {
	s := &Store{db: db, postgres: postgres}
	workers := 1 // SQLite has one writer
	if postgres {
		workers = 2
	}
	s.finish = batch.New(s.finishBatch, 128, workers)
	return s
}

// MigrateURL migrates the PostgreSQL database at url.
func MigrateURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return migrate.Postgres(ctx, conn, migrations, "migrations", 727275017)
}

// MigrateCommand applies this database's migrations.
const MigrateCommand = "obol migrate events"

// Check runs no DDL: a *migrate.BehindError when a migration is missing.
func Check(ctx context.Context, db migrate.Querier) error {
	return migrate.CheckPostgres(ctx, db, migrations, "migrations", MigrateCommand)
}

// Version is the schema's version and the one this binary needs.
func Version(ctx context.Context, db migrate.Querier) (have, want int, err error) {
	return migrate.PostgresVersion(ctx, db, migrations, "migrations")
}

// OpenPostgres migrates and opens the events database.
func OpenPostgres(ctx context.Context, url string) (*Store, error) {
	return OpenPostgresMode(ctx, url, migrate.Auto)
}

// OpenPostgresMode opens the events database, migrating it (Auto) or only
// checking that its schema is current (Off: no DDL).
func OpenPostgresMode(ctx context.Context, url string, mode migrate.Mode) (*Store, error) {
	var err error
	if mode == migrate.Off {
		err = checkURL(ctx, url)
	} else {
		err = MigrateURL(ctx, url)
	}
	if err != nil {
		return nil, fmt.Errorf("events postgres: %w", err)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	return newStore(db, true), nil
}

func checkURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return Check(ctx, conn)
}

// OpenSQLite opens (creating) the embedded default's database.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	db, err := migrate.OpenSQLite(ctx, path, migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return newStore(db, false), nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.finish.Close()
	return s.db.Close()
}

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

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return sqltx.Run(ctx, s.db, fn)
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// NewID returns prefix + 24 random hex digits.
func NewID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Publish appends events atomically and schedules a delivery of each new
// one to every enabled endpoint of its merchant that subscribes to its
// type (or, with only set, to that endpoint alone: a manual delivery,
// within the rate limit, *RateLimitedError). An id stored before
// with the same content is a duplicate; with other content the whole batch
// is refused (ErrEventConflict, wrapped with the event's index).
func (s *Store) Publish(ctx context.Context, events []Event, only string, now time.Time) (published, duplicates int, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		published, duplicates = 0, 0
		endpoints := map[string][]Endpoint{}
		for i := range events {
			e := &events[i]
			e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Microsecond)
			h := e.hash()
			res, err := tx.ExecContext(ctx, s.q(`INSERT INTO events (id, merchant_id, type, created_at, object_type, object_id, object_version, data, content_hash)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
				e.ID, e.MerchantID, e.Type, micros(e.CreatedAt), e.ObjectType, e.ObjectID, e.ObjectVersion, string(e.Data), h)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				var old string
				if err := tx.QueryRowContext(ctx, s.q(`SELECT content_hash FROM events WHERE id = ?`), e.ID).Scan(&old); err != nil {
					return err
				}
				if old != h {
					return fmt.Errorf("events[%d]: %w", i, ErrEventConflict)
				}
				duplicates++
				continue
			}
			published++
			var targets []Endpoint
			if only != "" {
				ep, err := s.endpoint(ctx, tx, e.MerchantID, only)
				if err != nil {
					return err
				}
				if err := s.allowManual(ctx, tx, ep.ID, now); err != nil {
					return err
				}
				targets = []Endpoint{ep}
			} else {
				eps, ok := endpoints[e.MerchantID]
				if !ok {
					if eps, err = s.enabledEndpoints(ctx, tx, e.MerchantID); err != nil {
						return err
					}
					endpoints[e.MerchantID] = eps
				}
				for _, ep := range eps {
					if ep.Wants(e.Type) {
						targets = append(targets, ep)
					}
				}
			}
			for _, ep := range targets {
				if _, err := s.addDelivery(ctx, tx, e.ID, ep.ID, e.MerchantID, only != "", now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return published, duplicates, err
}

// Manual deliveries (test events, redeliveries) are limited per endpoint:
// at most ManualBurst in any ManualWindow.
const (
	ManualBurst  = 10
	ManualWindow = time.Minute
)

// ErrRateLimited: an endpoint had ManualBurst manual deliveries in the
// last ManualWindow. It is a *RateLimitedError.
var ErrRateLimited = errors.New("too many test events and redeliveries for this endpoint")

// RateLimitedError is ErrRateLimited with when to retry.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return ErrRateLimited.Error() }

// Is matches ErrRateLimited.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// allowManual refuses a manual delivery to the endpoint beyond the limit.
// The deliveries in the database are the count (per endpoint, serialised:
// a PostgreSQL advisory lock, SQLite transactions are immediate).
func (s *Store) allowManual(ctx context.Context, tx *sql.Tx, endpointID string, now time.Time) error {
	if s.postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(727275020, hashtext($1))`, endpointID); err != nil {
			return err
		}
	}
	var n int
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE endpoint_id = ? AND manual = 1 AND created_at > ?`),
		endpointID, micros(now.Add(-ManualWindow))).Scan(&n, &oldest); err != nil {
		return err
	}
	if n < ManualBurst {
		return nil
	}
	wait := fromMicros(oldest.Int64).Add(ManualWindow).Sub(now)
	return &RateLimitedError{RetryAfter: max(wait, time.Microsecond)}
}

func (s *Store) addDelivery(ctx context.Context, db execer, eventID, endpointID, merchant string, manual bool, now time.Time) (Delivery, error) {
	d := Delivery{ID: NewID("dlv_"), EventID: eventID, EndpointID: endpointID, MerchantID: merchant, Status: DeliveryPending,
		NextAttemptAt: now.UTC().Truncate(time.Microsecond), CreatedAt: now.UTC().Truncate(time.Microsecond), UpdatedAt: now.UTC().Truncate(time.Microsecond)}
	m := 0
	if manual {
		m = 1
	}
	_, err := db.ExecContext(ctx, s.q(`INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, status, next_attempt_at, created_at, updated_at, manual) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		d.ID, d.EventID, d.EndpointID, d.MerchantID, d.Status, micros(d.NextAttemptAt), micros(d.CreatedAt), micros(d.UpdatedAt), m)
	return d, err
}

const eventCols = `id, merchant_id, type, created_at, object_type, object_id, object_version, data`

type scanner interface{ Scan(...any) error }

func scanEvent(r scanner) (Event, error) {
	var e Event
	var created int64
	var data string
	err := r.Scan(&e.ID, &e.MerchantID, &e.Type, &created, &e.ObjectType, &e.ObjectID, &e.ObjectVersion, &data)
	e.CreatedAt, e.Data = fromMicros(created), json.RawMessage(data)
	return e, err
}

// Event reads a merchant's event.
func (s *Store) Event(ctx context.Context, merchant, id string) (Event, error) {
	e, err := scanEvent(s.db.QueryRowContext(ctx, s.q(`SELECT `+eventCols+` FROM events WHERE id = ? AND merchant_id = ?`), id, merchant))
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	return e, err
}

// Cursor is a position in a newest-first list: the last row's time and id.
type Cursor struct {
	At time.Time
	ID string
}

// EventFilter narrows ListEvents.
type EventFilter struct {
	Types         []string
	CreatedAfter  time.Time // inclusive
	CreatedBefore time.Time // exclusive
	ObjectID      string
	After         *Cursor
	Limit         int
}

// Events lists a merchant's events, newest first.
func (s *Store) Events(ctx context.Context, merchant string, f EventFilter) ([]Event, error) {
	q := `SELECT ` + eventCols + ` FROM events WHERE merchant_id = ?`
	args := []any{merchant}
	if len(f.Types) > 0 {
		q += ` AND type IN (?` + strings.Repeat(", ?", len(f.Types)-1) + `)`
		for _, t := range f.Types {
			args = append(args, t)
		}
	}
	if !f.CreatedAfter.IsZero() {
		q += ` AND created_at >= ?`
		args = append(args, micros(f.CreatedAfter))
	}
	if !f.CreatedBefore.IsZero() {
		q += ` AND created_at < ?`
		args = append(args, micros(f.CreatedBefore))
	}
	if f.ObjectID != "" {
		q += ` AND object_id = ?`
		args = append(args, f.ObjectID)
	}
	q, args = newestFirst(q, args, "created_at", f.After, f.Limit)
	return queryAll(ctx, s.db, s.q(q), args, scanEvent)
}

// newestFirst appends to q the rows older than after (by col, ties broken by
// id), newest first, at most limit of them.
func newestFirst(q string, args []any, col string, after *Cursor, limit int) (string, []any) {
	if after != nil {
		q += ` AND (` + col + ` < ? OR (` + col + ` = ? AND id < ?))`
		args = append(args, micros(after.At), micros(after.At), after.ID)
	}
	q += ` ORDER BY ` + col + ` DESC, id DESC LIMIT ?`
	return q, append(args, limit)
}

// queryAll runs query and scans every row it returns.
func queryAll[T any](ctx context.Context, db execer, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
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

const endpointCols = `id, merchant_id, url, event_types, description, status, disabled_reason, secret, prev_secret, prev_secret_expires_at, created_at, updated_at, version`

func scanEndpoint(r scanner) (Endpoint, error) {
	var e Endpoint
	var types string
	var prevExp, created, updated int64
	err := r.Scan(&e.ID, &e.MerchantID, &e.URL, &types, &e.Description, &e.Status, &e.DisabledReason, &e.Secret, &e.PrevSecret, &prevExp, &created, &updated, &e.Version)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(types), &e.Types); err != nil {
		return e, fmt.Errorf("endpoint %s: event types: %w", e.ID, err)
	}
	e.PrevSecretExpiresAt, e.CreatedAt, e.UpdatedAt = fromMicros(prevExp), fromMicros(created), fromMicros(updated)
	return e, nil
}

// ErrEndpointDisabled: the endpoint is disabled (Redeliver).
var ErrEndpointDisabled = errors.New("webhook endpoint disabled")

// ErrTooManyEndpoints: the merchant already has the most endpoints
// CreateEndpoint allows.
var ErrTooManyEndpoints = errors.New("too many webhook endpoints")

// CreateEndpoint stores a new endpoint (version 1), unless its merchant
// already has max endpoints (ErrTooManyEndpoints; max 0: no bound). The
// count and the insert are one transaction, serialised per merchant (a
// PostgreSQL advisory lock; SQLite transactions are immediate), so
// concurrent creations cannot pass the bound.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint, max int) (Endpoint, error) {
	types, err := json.Marshal(e.Types)
	if err != nil {
		return e, err
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Microsecond)
	e.UpdatedAt, e.Version = e.CreatedAt, 1
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if max > 0 {
			if s.postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(727275018, hashtext($1))`, e.MerchantID); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM endpoints WHERE merchant_id = ?`), e.MerchantID).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return ErrTooManyEndpoints
			}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO endpoints (`+endpointCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			e.ID, e.MerchantID, e.URL, string(types), e.Description, e.Status, e.DisabledReason, e.Secret, e.PrevSecret, micros(e.PrevSecretExpiresAt), micros(e.CreatedAt), micros(e.UpdatedAt), e.Version)
		return err
	})
	return e, err
}

func (s *Store) endpoint(ctx context.Context, db execer, merchant, id string) (Endpoint, error) {
	e, err := scanEndpoint(db.QueryRowContext(ctx, s.q(`SELECT `+endpointCols+` FROM endpoints WHERE id = ? AND merchant_id = ?`), id, merchant))
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	return e, err
}

// Endpoint reads a merchant's endpoint.
func (s *Store) Endpoint(ctx context.Context, merchant, id string) (Endpoint, error) {
	return s.endpoint(ctx, s.db, merchant, id)
}

func (s *Store) enabledEndpoints(ctx context.Context, db execer, merchant string) ([]Endpoint, error) {
	return queryAll(ctx, db, s.q(`SELECT `+endpointCols+` FROM endpoints WHERE merchant_id = ? AND status = ? ORDER BY id`), []any{merchant, StatusEnabled}, scanEndpoint)
}

// Endpoints lists a merchant's endpoints by id, after the cursor id.
func (s *Store) Endpoints(ctx context.Context, merchant, after string, limit int) ([]Endpoint, error) {
	return queryAll(ctx, s.db, s.q(`SELECT `+endpointCols+` FROM endpoints WHERE merchant_id = ? AND id > ? ORDER BY id LIMIT ?`), []any{merchant, after, limit}, scanEndpoint)
}

// UpdateEndpoint writes e if its version is still the stored one
// (ErrConcurrentUpdate otherwise) and returns it at the next version.
func (s *Store) UpdateEndpoint(ctx context.Context, e Endpoint, now time.Time) (Endpoint, error) {
	return s.updateEndpoint(ctx, s.db, e, now)
}

func (s *Store) updateEndpoint(ctx context.Context, db execer, e Endpoint, now time.Time) (Endpoint, error) {
	types, err := json.Marshal(e.Types)
	if err != nil {
		return e, err
	}
	e.UpdatedAt = now.UTC().Truncate(time.Microsecond)
	res, err := db.ExecContext(ctx, s.q(`UPDATE endpoints SET url = ?, event_types = ?, description = ?, status = ?, disabled_reason = ?, secret = ?, prev_secret = ?, prev_secret_expires_at = ?, updated_at = ?, version = version + 1
		WHERE id = ? AND merchant_id = ? AND version = ?`),
		e.URL, string(types), e.Description, e.Status, e.DisabledReason, e.Secret, e.PrevSecret, micros(e.PrevSecretExpiresAt), micros(e.UpdatedAt), e.ID, e.MerchantID, e.Version)
	if err != nil {
		return e, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return e, ErrConcurrentUpdate
	}
	e.Version++
	return e, nil
}

// DeleteEndpoint deletes an endpoint with its deliveries and attempts.
func (s *Store) DeleteEndpoint(ctx context.Context, merchant, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM endpoints WHERE id = ? AND merchant_id = ?`), id, merchant)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DisableEndpoint disables an enabled endpoint and, in the same
// transaction, publishes ev (webhook_endpoint.disabled) to the merchant's
// other endpoints. It reports false when the endpoint was not enabled (or
// is gone).
func (s *Store) DisableEndpoint(ctx context.Context, endpointID, reason string, ev func(Endpoint) Event, now time.Time) (bool, error) {
	done := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		done = false
		var merchant string
		err := tx.QueryRowContext(ctx, s.q(`SELECT merchant_id FROM endpoints WHERE id = ?`), endpointID).Scan(&merchant)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		ep, err := s.endpoint(ctx, tx, merchant, endpointID)
		if err != nil {
			return err
		}
		if ep.Status != StatusEnabled {
			return nil
		}
		ep.Status, ep.DisabledReason = StatusDisabled, reason
		if ep, err = s.updateEndpoint(ctx, tx, ep, now); err != nil {
			return err
		}
		e := ev(ep)
		e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Microsecond)
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO events (id, merchant_id, type, created_at, object_type, object_id, object_version, data, content_hash)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
			e.ID, e.MerchantID, e.Type, micros(e.CreatedAt), e.ObjectType, e.ObjectID, e.ObjectVersion, string(e.Data), e.hash()); err != nil {
			return err
		}
		eps, err := s.enabledEndpoints(ctx, tx, merchant)
		if err != nil {
			return err
		}
		for _, o := range eps {
			if o.Wants(e.Type) {
				if _, err := s.addDelivery(ctx, tx, e.ID, o.ID, merchant, false, now); err != nil {
					return err
				}
			}
		}
		done = true
		return nil
	})
	return done, err
}

// Redeliver schedules a new delivery of a merchant's event to one of its
// endpoints, due now, within the manual rate limit (*RateLimitedError).
func (s *Store) Redeliver(ctx context.Context, merchant, eventID, endpointID string, now time.Time) (Delivery, error) {
	var d Delivery
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := scanEvent(tx.QueryRowContext(ctx, s.q(`SELECT `+eventCols+` FROM events WHERE id = ? AND merchant_id = ?`), eventID, merchant)); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("event: %w", ErrNotFound)
			}
			return err
		}
		ep, err := s.endpoint(ctx, tx, merchant, endpointID)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("endpoint: %w", ErrNotFound)
			}
			return err
		}
		if ep.Status != StatusEnabled {
			// Deliveries to a disabled endpoint are not attempted: one
			// scheduled now would sit pending, unsaid.
			return ErrEndpointDisabled
		}
		if err := s.allowManual(ctx, tx, endpointID, now); err != nil {
			return err
		}
		d, err = s.addDelivery(ctx, tx, eventID, endpointID, merchant, true, now)
		return err
	})
	return d, err
}

const deliveryCols = `d.id, d.event_id, d.endpoint_id, d.merchant_id, d.status, d.attempts, d.next_attempt_at, d.lease_owner, d.lease_until, d.created_at, d.updated_at`

func scanDelivery(dst *Delivery, extra ...any) []any {
	return append([]any{&dst.ID, &dst.EventID, &dst.EndpointID, &dst.MerchantID, &dst.Status, &dst.Attempts}, extra...)
}

// Delivery reads a delivery by id.
func (s *Store) Delivery(ctx context.Context, id string) (Delivery, error) {
	var d Delivery
	var next, until, created, updated int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT `+deliveryCols+` FROM deliveries d WHERE d.id = ?`), id).
		Scan(scanDelivery(&d, &next, &d.LeaseOwner, &until, &created, &updated)...)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	d.NextAttemptAt, d.LeaseUntil, d.CreatedAt, d.UpdatedAt = fromMicros(next), fromMicros(until), fromMicros(created), fromMicros(updated)
	return d, err
}

// LeaseLimits bound the deliveries in flight (leased, lease not run out)
// so that one endpoint or merchant cannot take every worker: an endpoint
// that hangs holds at most PerEndpoint of them, a merchant at most
// PerMerchant (0: no bound).
type LeaseLimits struct {
	PerEndpoint, PerMerchant int
}

// Lease claims up to limit due deliveries to enabled endpoints for owner
// until until: pending, due at now, and not leased by a live worker. A
// worker that dies keeps its deliveries only until its leases run out.
//
// The choice is fair: round-robin over the endpoints with due work (the
// one with the oldest due delivery first), oldest first within one, and
// within lim counting the deliveries already in flight. The leases in the
// database are the truth (the count survives a crash, and a dead worker's
// slots free when its leases run out); leasing is serialised (a
// PostgreSQL advisory lock; SQLite transactions are immediate), so
// concurrent workers cannot pass the bounds together.
func (s *Store) Lease(ctx context.Context, owner string, now, until time.Time, limit int, lim LeaseLimits) ([]Leased, error) {
	var out []Leased
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		if s.postgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(727275019)`); err != nil {
				return err
			}
		}
		ids, err := s.pickFair(ctx, tx, now, limit, lim)
		if err != nil || len(ids) == 0 {
			return err
		}
		in := `(?` + strings.Repeat(", ?", len(ids)-1) + `)`
		args := []any{owner, micros(until)}
		idArgs := make([]any, len(ids))
		for i, id := range ids {
			idArgs[i] = id
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id IN `+in+` AND status = ? AND lease_until <= ?`),
			append(append(args, idArgs...), DeliveryPending, micros(now))...); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT `+deliveryCols+`,
				e.id, e.merchant_id, e.type, e.created_at, e.object_type, e.object_id, e.object_version, e.data,
				p.id, p.merchant_id, p.url, p.event_types, p.description, p.status, p.disabled_reason, p.secret, p.prev_secret, p.prev_secret_expires_at, p.created_at, p.updated_at, p.version
				FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints p ON p.id = d.endpoint_id WHERE d.id IN `+in+` AND d.lease_owner = ? AND d.lease_until = ?
				ORDER BY d.next_attempt_at, d.id`), append(idArgs, owner, micros(until))...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l Leased
			var next, lu, created, updated int64
			var evCreated int64
			var data, types string
			var prevExp, epCreated, epUpdated int64
			err := rows.Scan(scanDelivery(&l.Delivery, &next, &l.Delivery.LeaseOwner, &lu, &created, &updated,
				&l.Event.ID, &l.Event.MerchantID, &l.Event.Type, &evCreated, &l.Event.ObjectType, &l.Event.ObjectID, &l.Event.ObjectVersion, &data,
				&l.Endpoint.ID, &l.Endpoint.MerchantID, &l.Endpoint.URL, &types, &l.Endpoint.Description, &l.Endpoint.Status, &l.Endpoint.DisabledReason,
				&l.Endpoint.Secret, &l.Endpoint.PrevSecret, &prevExp, &epCreated, &epUpdated, &l.Endpoint.Version)...)
			if err != nil {
				return err
			}
			l.Delivery.NextAttemptAt, l.Delivery.LeaseUntil, l.Delivery.CreatedAt, l.Delivery.UpdatedAt = fromMicros(next), fromMicros(lu), fromMicros(created), fromMicros(updated)
			l.Event.CreatedAt, l.Event.Data = fromMicros(evCreated), json.RawMessage(data)
			if err := json.Unmarshal([]byte(types), &l.Endpoint.Types); err != nil {
				return err
			}
			l.Endpoint.PrevSecretExpiresAt, l.Endpoint.CreatedAt, l.Endpoint.UpdatedAt = fromMicros(prevExp), fromMicros(epCreated), fromMicros(epUpdated)
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}

// pickFair chooses the due deliveries to lease (see Lease).
func (s *Store) pickFair(ctx context.Context, tx *sql.Tx, now time.Time, limit int, lim LeaseLimits) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	// In flight: a live lease.
	epIn, mIn := map[string]int{}, map[string]int{}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT endpoint_id, merchant_id, COUNT(*) FROM deliveries WHERE lease_until > ? AND status = ? GROUP BY endpoint_id, merchant_id`),
		micros(now), DeliveryPending)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var ep, m string
		var n int
		if err := rows.Scan(&ep, &m, &n); err != nil {
			rows.Close()
			return nil, err
		}
		epIn[ep] += n
		mIn[m] += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Candidates: each endpoint's oldest due deliveries, as many as it
	// could take.
	per := limit
	if lim.PerEndpoint > 0 {
		per = min(per, lim.PerEndpoint)
	}
	rows, err = tx.QueryContext(ctx, s.q(`SELECT id, endpoint_id, merchant_id FROM (
			SELECT d.id, d.endpoint_id, d.merchant_id, d.next_attempt_at,
				ROW_NUMBER() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.id) AS rn
			FROM deliveries d JOIN endpoints p ON p.id = d.endpoint_id
			WHERE d.status = ? AND d.next_attempt_at <= ? AND d.lease_until <= ? AND p.status = ?) c
		WHERE rn <= ? ORDER BY next_attempt_at, id`), DeliveryPending, micros(now), micros(now), StatusEnabled, per)
	if err != nil {
		return nil, err
	}
	type queue struct {
		endpoint, merchant string
		ids                []string
	}
	var queues []*queue
	byEP := map[string]*queue{}
	for rows.Next() {
		var id, ep, m string
		if err := rows.Scan(&id, &ep, &m); err != nil {
			rows.Close()
			return nil, err
		}
		q := byEP[ep]
		if q == nil {
			q = &queue{endpoint: ep, merchant: m}
			byEP[ep] = q
			queues = append(queues, q) // in the order of their oldest
		}
		q.ids = append(q.ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var ids []string
	for len(ids) < limit && len(queues) > 0 {
		next := queues[:0]
		for _, q := range queues {
			if len(ids) == limit {
				break
			}
			if (lim.PerEndpoint > 0 && epIn[q.endpoint] >= lim.PerEndpoint) || (lim.PerMerchant > 0 && mIn[q.merchant] >= lim.PerMerchant) {
				continue
			}
			ids = append(ids, q.ids[0])
			q.ids = q.ids[1:]
			epIn[q.endpoint]++
			mIn[q.merchant]++
			if len(q.ids) > 0 {
				next = append(next, q)
			}
		}
		queues = next
	}
	return ids, nil
}

// Outcome is what to do with a delivery after an attempt.
type Outcome struct {
	// Status is DeliverySucceeded, DeliveryFailed (gave up) or
	// DeliveryPending (retry at NextAttemptAt).
	Status        string
	NextAttemptAt time.Time
}

// Finish records an attempt and the delivery's outcome. The attempt is
// recorded in any case; the delivery is updated only while owner still
// holds its lease (it reports false otherwise: another worker took over).
// Concurrent calls share a transaction (group commit); each returns once
// its own row is committed.
func (s *Store) Finish(ctx context.Context, owner string, a Attempt, o Outcome, now time.Time) (bool, error) {
	err := s.finish.Do(ctx, finishItem{owner: owner, a: a, o: o, now: now})
	if errors.Is(err, errLeaseLost) {
		return false, nil
	}
	return err == nil, err
}

type finishItem struct {
	owner string
	a     Attempt
	o     Outcome
	now   time.Time
}

var errLeaseLost = errors.New("lease lost")

func (s *Store) finishBatch(ctx context.Context, items []finishItem) []error {
	errs := make([]error, len(items))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for i, it := range items {
			a, o := it.a, it.o
			res, err := tx.ExecContext(ctx, s.q(`UPDATE deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, lease_owner = '', lease_until = 0, updated_at = ?
				WHERE id = ? AND lease_owner = ? AND status = ?`),
				o.Status, micros(o.NextAttemptAt), micros(it.now), a.DeliveryID, it.owner, DeliveryPending)
			if err != nil {
				return err
			}
			errs[i] = nil
			if n, _ := res.RowsAffected(); n != 1 {
				errs[i] = errLeaseLost
				// Another worker took the delivery over, or its endpoint was
				// deleted meanwhile (with its deliveries): the attempt is
				// recorded only while the delivery exists.
				lock := ""
				if s.postgres {
					lock = " FOR SHARE"
				}
				var one int
				err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM deliveries WHERE id = ?`+lock), a.DeliveryID).Scan(&one)
				if errors.Is(err, sql.ErrNoRows) {
					continue
				}
				if err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO attempts (id, delivery_id, event_id, endpoint_id, attempt, started_at, response_status, latency_us, error, succeeded)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
				a.ID, a.DeliveryID, a.EventID, a.EndpointID, a.Attempt, micros(a.StartedAt), a.ResponseStatus, a.Latency.Microseconds(), a.Error, a.Succeeded); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

// SucceededSince reports whether any attempt to the endpoint succeeded at
// or after t.
func (s *Store) SucceededSince(ctx context.Context, endpointID string, t time.Time) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM attempts WHERE endpoint_id = ? AND succeeded = ? AND started_at >= ?`), endpointID, true, micros(t)).Scan(&n)
	return n > 0, err
}

// AttemptFilter narrows Attempts.
type AttemptFilter struct {
	EventID string
	After   *Cursor
	Limit   int
}

// Attempts lists a merchant's endpoint's attempts, newest first.
func (s *Store) Attempts(ctx context.Context, merchant, endpointID string, f AttemptFilter) ([]Attempt, error) {
	if _, err := s.Endpoint(ctx, merchant, endpointID); err != nil {
		return nil, err
	}
	q := `SELECT id, delivery_id, event_id, endpoint_id, attempt, started_at, response_status, latency_us, error, succeeded FROM attempts WHERE endpoint_id = ?`
	args := []any{endpointID}
	if f.EventID != "" {
		q += ` AND event_id = ?`
		args = append(args, f.EventID)
	}
	q, args = newestFirst(q, args, "started_at", f.After, f.Limit)
	return queryAll(ctx, s.db, s.q(q), args, scanAttempt)
}

func scanAttempt(r scanner) (Attempt, error) {
	var a Attempt
	var started, lat int64
	err := r.Scan(&a.ID, &a.DeliveryID, &a.EventID, &a.EndpointID, &a.Attempt, &started, &a.ResponseStatus, &lat, &a.Error, &a.Succeeded)
	a.StartedAt, a.Latency = fromMicros(started), time.Duration(lat)*time.Microsecond
	return a, err
}

// DeliveryCounts counts deliveries by status (for tests, metrics and the
// load figures).
func (s *Store) DeliveryCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT status, COUNT(*) FROM deliveries GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}
