// Package sqlite is the embedded-default vault backend for `obol dev`, on
// SQLite through modernc.org/sqlite (pure Go, no cgo). It passes the same
// conformance suite (storetest) as the PostgreSQL backend. It stores
// ciphertext and PAN-free metadata only.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/sqltime"
	"github.com/obolpay/obol/internal/sqltx"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

var _ store.Store = (*Store)(nil)

// Store is a SQLite vault backend.
type Store struct {
	db *sql.DB
}

// Open opens (creating if needed) the database file at path, in WAL mode with
// full synchronous commits, and applies migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := migrate.OpenSQLite(ctx, path, migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// InsertDEK stores a wrapped DEK.
func (s *Store) InsertDEK(ctx context.Context, d envelope.DEKRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO deks (id, wrapped, kek_version, created_at) VALUES (?, ?, ?, ?)`, d.ID, d.Wrapped, d.KEKVersion, sqltime.Format(d.CreatedAt))
	if isUnique(err) {
		return store.ErrDuplicate
	}
	return err
}

// GetDEK reads a wrapped DEK.
func (s *Store) GetDEK(ctx context.Context, id string) (envelope.DEKRecord, error) {
	d := envelope.DEKRecord{ID: id}
	err := s.db.QueryRowContext(ctx, `SELECT wrapped, kek_version, created_at FROM deks WHERE id = ?`, id).Scan(&d.Wrapped, &d.KEKVersion, sqltime.Into(&d.CreatedAt))
	return d, notFound(err)
}

// CreateMerchant inserts a merchant and its keys in one transaction.
func (s *Store) CreateMerchant(ctx context.Context, m store.Merchant, keys []store.APIKey) error {
	origins := m.AllowedOrigins
	if origins == nil {
		origins = []string{}
	}
	oj, _ := json.Marshal(origins)
	return sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO merchants (id, name, allowed_origins, created_at) VALUES (?, ?, ?, ?)`, m.ID, m.Name, string(oj), sqltime.Format(m.CreatedAt)); err != nil {
			if isUnique(err) {
				return store.ErrDuplicate
			}
			return err
		}
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO api_keys (hash, prefix, merchant_id, kind, created_at) VALUES (?, ?, ?, ?, ?)`, k.Hash, k.Prefix, m.ID, k.Kind, sqltime.Format(k.CreatedAt)); err != nil {
				if isUnique(err) {
					return store.ErrDuplicate
				}
				return err
			}
		}
		return nil
	})
}

// GetMerchant reads a merchant.
func (s *Store) GetMerchant(ctx context.Context, id string) (store.Merchant, error) {
	m := store.Merchant{ID: id}
	var oj string
	if err := s.db.QueryRowContext(ctx, `SELECT name, allowed_origins, created_at FROM merchants WHERE id = ?`, id).Scan(&m.Name, &oj, sqltime.Into(&m.CreatedAt)); err != nil {
		return m, notFound(err)
	}
	if err := json.Unmarshal([]byte(oj), &m.AllowedOrigins); err != nil {
		return m, fmt.Errorf("merchant %s: allowed_origins: %w", id, err)
	}
	return m, nil
}

// LookupAPIKey finds a key by hash.
func (s *Store) LookupAPIKey(ctx context.Context, hash []byte) (store.APIKey, error) {
	k := store.APIKey{Hash: hash}
	err := s.db.QueryRowContext(ctx, `SELECT prefix, merchant_id, kind, created_at FROM api_keys WHERE hash = ?`, hash).Scan(&k.Prefix, &k.MerchantID, &k.Kind, sqltime.Into(&k.CreatedAt))
	return k, notFound(err)
}

// OriginAllowed reports whether any merchant lists origin.
func (s *Store) OriginAllowed(ctx context.Context, origin string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM merchants, json_each(merchants.allowed_origins) WHERE json_each.value = ?`, origin).Scan(&n)
	return n > 0, err
}

const tokenCols = `token, merchant_id, dek_id, ciphertext, brand, bin, last4, exp_month, exp_year, fingerprint, created_at, fingerprint_version`

func scanToken(row interface{ Scan(...any) error }) (store.TokenRecord, error) {
	var r store.TokenRecord
	err := row.Scan(&r.Token, &r.MerchantID, &r.DEKID, &r.Ciphertext, &r.Brand, &r.BIN, &r.Last4, &r.ExpMonth, &r.ExpYear, &r.Fingerprint, sqltime.Into(&r.CreatedAt), &r.FingerprintVersion)
	return r, notFound(err)
}

// CreateToken inserts the idempotency record (if any) and the token atomically.
func (s *Store) CreateToken(ctx context.Context, r store.TokenRecord, idem *store.IdempotencyRecord) error {
	return sqltx.Run(ctx, s.db, func(tx *sql.Tx) error { return s.insertToken(ctx, tx, r, idem) })
}

func (s *Store) insertToken(ctx context.Context, tx *sql.Tx, r store.TokenRecord, idem *store.IdempotencyRecord) error {
	if idem != nil {
		res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (merchant_id, key, operation, request_mac, response, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			idem.MerchantID, idem.Key, idem.Operation, idem.RequestMAC, idem.Response, sqltime.Format(idem.CreatedAt))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrIdempotencyExists
		}
	}
	fv := r.FingerprintVersion
	if fv == 0 {
		fv = 1
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Token, r.MerchantID, r.DEKID, r.Ciphertext, r.Brand, r.BIN, r.Last4, r.ExpMonth, r.ExpYear, r.Fingerprint, sqltime.Format(r.CreatedAt), fv)
	if isUnique(err) {
		return store.ErrDuplicate
	}
	return err
}

// GetToken reads a merchant's token.
func (s *Store) GetToken(ctx context.Context, merchantID, token string) (store.TokenRecord, error) {
	return scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE token = ? AND merchant_id = ?`, token, merchantID))
}

// FindTokenByFingerprint returns the merchant's oldest token for a card.
func (s *Store) FindTokenByFingerprint(ctx context.Context, merchantID, fp string) (store.TokenRecord, error) {
	return scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE merchant_id = ? AND fingerprint = ? ORDER BY created_at, token LIMIT 1`, merchantID, fp))
}

// DeleteToken removes a merchant's token.
func (s *Store) DeleteToken(ctx context.Context, merchantID, token string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tokens WHERE token = ? AND merchant_id = ?`, token, merchantID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// CountTokens counts all tokens.
func (s *Store) CountTokens(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM tokens`).Scan(&n)
	return n, err
}

// GetIdempotency reads an idempotency record.
func (s *Store) GetIdempotency(ctx context.Context, merchantID, key string) (store.IdempotencyRecord, error) {
	r := store.IdempotencyRecord{MerchantID: merchantID, Key: key}
	err := s.db.QueryRowContext(ctx, `SELECT operation, request_mac, response, created_at FROM idempotency_keys WHERE merchant_id = ? AND key = ?`, merchantID, key).
		Scan(&r.Operation, &r.RequestMAC, &r.Response, sqltime.Into(&r.CreatedAt))
	return r, notFound(err)
}

// PutIdempotency inserts an idempotency record.
func (s *Store) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO idempotency_keys (merchant_id, key, operation, request_mac, response, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		r.MerchantID, r.Key, r.Operation, r.RequestMAC, r.Response, sqltime.Format(r.CreatedAt))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrIdempotencyExists
	}
	return nil
}

// DEKsBelowVersion lists DEKs wrapped under an older KEK version.
func (s *Store) DEKsBelowVersion(ctx context.Context, version int, after string, limit int) ([]envelope.DEKRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, wrapped, kek_version, created_at FROM deks WHERE kek_version < ? AND id > ? ORDER BY id LIMIT ?`, version, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []envelope.DEKRecord
	for rows.Next() {
		var d envelope.DEKRecord
		if err := rows.Scan(&d.ID, &d.Wrapped, &d.KEKVersion, sqltime.Into(&d.CreatedAt)); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// RewrapDEK swaps a DEK's wrapped form if unchanged since it was read.
func (s *Store) RewrapDEK(ctx context.Context, id, oldWrapped, newWrapped string, newVersion int) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deks SET wrapped = ?, kek_version = ? WHERE id = ? AND wrapped = ?`, newWrapped, newVersion, id, oldWrapped)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// KeyStats counts DEKs and tokens per KEK version.
func (s *Store) KeyStats(ctx context.Context) ([]store.KeyStat, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT d.kek_version, count(DISTINCT d.id), count(t.token)
		FROM deks d LEFT JOIN tokens t ON t.dek_id = d.id GROUP BY d.kek_version ORDER BY d.kek_version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.KeyStat
	for rows.Next() {
		var k store.KeyStat
		if err := rows.Scan(&k.KEKVersion, &k.DEKs, &k.Tokens); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AppendAudit chains and appends events in one (immediate, hence serialized)
// transaction.
func (s *Store) AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	out := append([]audit.Event(nil), events...)
	err := sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		var lastSeq int64
		lastHash := audit.Genesis
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		audit.Chain(lastSeq, lastHash, out)
		for _, e := range out {
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events (seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				e.Seq, sqltime.Format(e.At), e.Actor, e.Action, e.MerchantID, e.Token, e.Purpose, e.DestinationHost, e.KEKVersion, e.Detail, e.PrevHash, e.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListAudit returns events after a seq, in seq order.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash
		FROM audit_events WHERE seq > ? AND (? = '' OR merchant_id = ?) AND (? = '' OR token = ?) ORDER BY seq LIMIT ?`, f.AfterSeq, f.MerchantID, f.MerchantID, f.Token, f.Token, f.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var e audit.Event
		if err := rows.Scan(&e.Seq, sqltime.Into(&e.At), &e.Actor, &e.Action, &e.MerchantID, &e.Token, &e.Purpose, &e.DestinationHost, &e.KEKVersion, &e.Detail, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DEKStats lists DEKs with their token counts, oldest first.
func (s *Store) DEKStats(ctx context.Context) ([]store.DEKStat, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT d.id, d.kek_version, d.created_at, count(t.token)
		FROM deks d LEFT JOIN tokens t ON t.dek_id = d.id GROUP BY d.id ORDER BY d.created_at, d.id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.DEKStat
	for rows.Next() {
		var d store.DEKStat
		if err := rows.Scan(&d.ID, &d.KEKVersion, sqltime.Into(&d.CreatedAt), &d.Tokens); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// TokensUnderOldDEKs lists tokens sealed under DEKs created before cutoff.
func (s *Store) TokensUnderOldDEKs(ctx context.Context, cutoff time.Time, after string, limit int) ([]store.TokenRecord, error) {
	return s.listTokens(ctx, `SELECT `+prefixed("t.", tokenCols)+` FROM tokens t JOIN deks d ON d.id = t.dek_id
		WHERE d.created_at < ? AND t.token > ? ORDER BY t.token LIMIT ?`, sqltime.Format(cutoff), after, limit)
}

// TokensWithFingerprintBelow lists tokens fingerprinted under an older secret version.
func (s *Store) TokensWithFingerprintBelow(ctx context.Context, version int, after string, limit int) ([]store.TokenRecord, error) {
	return s.listTokens(ctx, `SELECT `+tokenCols+` FROM tokens WHERE fingerprint_version < ? AND token > ? ORDER BY token LIMIT ?`, version, after, limit)
}

func (s *Store) listTokens(ctx context.Context, query string, args ...any) ([]store.TokenRecord, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.TokenRecord
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// UpdateFingerprint rewrites a token's fingerprint (compare-and-set).
func (s *Store) UpdateFingerprint(ctx context.Context, token, oldFP, newFP string, version int) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET fingerprint = ?, fingerprint_version = ? WHERE token = ? AND fingerprint = ?`, newFP, version, token, oldFP)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// ReplaceCiphertext re-seals a token if it is still under oldDEK.
func (s *Store) ReplaceCiphertext(ctx context.Context, token, oldDEK, newDEK string, ct []byte) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET dek_id = ?, ciphertext = ? WHERE token = ? AND dek_id = ?`, newDEK, ct, token, oldDEK)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DestroyDEKs deletes unused DEKs created before cutoff.
func (s *Store) DestroyDEKs(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM deks WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.dek_id = deks.id)`, sqltime.Format(cutoff))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// CreateTokenDeduped looks up and inserts in one immediate (serialized)
// transaction.
func (s *Store) CreateTokenDeduped(ctx context.Context, r store.TokenRecord, idem *store.IdempotencyRecord) (*store.TokenRecord, error) {
	var existing *store.TokenRecord
	err := sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		found, err := scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE merchant_id = ? AND fingerprint = ? ORDER BY created_at, token LIMIT 1`, r.MerchantID, r.Fingerprint))
		switch {
		case err == nil:
			existing = &found
			return nil
		case !errors.Is(err, sql.ErrNoRows) && !errors.Is(err, store.ErrNotFound):
			return err
		}
		return s.insertToken(ctx, tx, r, idem)
	})
	return existing, err
}

// AuditHead is the last audit event (by primary key: O(1)).
func (s *Store) AuditHead(ctx context.Context) (audit.Event, error) {
	var e audit.Event
	err := s.db.QueryRowContext(ctx, `SELECT seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash
		FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&e.Seq, sqltime.Into(&e.At), &e.Actor, &e.Action, &e.MerchantID, &e.Token, &e.Purpose, &e.DestinationHost, &e.KEKVersion, &e.Detail, &e.PrevHash, &e.Hash)
	return e, notFound(err)
}
