// Package postgres is the production vault backend on PostgreSQL via pgx.
// Migrations are embedded and applied at start under an advisory lock. It
// stores ciphertext and PAN-free metadata only.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/obolpay/obol/internal/batch"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

var (
	_ store.Store    = (*Store)(nil)
	_ store.Revealer = (*Store)(nil)
)

// Store is a PostgreSQL vault backend.
type Store struct {
	pool    *pgxpool.Pool
	creates *batch.Batcher[createReq]
	audits  *batch.Batcher[*auditReq]
	gets    *batch.Batcher[*getReq]
	reading atomic.Int64 // GetToken calls in flight

	// head is the chain head this store last appended (known false: read
	// it). Only the audit flusher (one worker) touches it; see flushAudit.
	headMu sync.Mutex
	head   struct {
		known bool
		seq   int64
		hash  []byte
	}
}

type auditReq struct {
	events []audit.Event
	reveal *revealReq // a reveal: its token is read in the append's transaction
}

// revealReq is one RevealToken: the token read under the chain's lock, in
// the transaction that appends the event built from it (see flushReveals).
type revealReq struct {
	merchantID, token string
	event             func(store.TokenRecord) (audit.Event, bool)
	rec               store.TokenRecord
	found, recorded   bool
}

// getReq is one GetToken; concurrent ones share a query (see flushGets).
type getReq struct {
	merchantID, token string
	rec               store.TokenRecord
	err               error
}

type createReq struct {
	rec  store.TokenRecord
	idem *store.IdempotencyRecord
}

// createFlushers is how many token-insert batches run at once, and
// createLinger how long a flusher of a loaded vault keeps its batch open
// for the next token (batch.NewLinger: at most 4 × createLinger, and never
// when the previous batch held a single token, so a lone request does not
// wait).
const (
	createFlushers = 2
	createLinger   = 250 * time.Microsecond
)

// Options tune the pool.
type Options struct {
	MaxConns int32 // default 40
	// Migrate Off runs no DDL: Open fails with a *migrate.BehindError
	// when the schema lacks a migration (default Auto: apply them).
	Migrate migrate.Mode
	// CreateFlushers and CreateLinger override createFlushers and
	// createLinger (zero: those; a negative linger: none). For benchmarks.
	CreateFlushers int
	CreateLinger   time.Duration
}

// Open connects, verifies the connection and applies migrations.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 40
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres at %s:%d/%s is unreachable: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if opts.Migrate == migrate.Off {
		err = Check(ctx, pool)
	} else {
		err = Migrate(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool}
	// Group commit: token inserts wait for one of createFlushers flushers,
	// which writes whatever is waiting in one transaction (one WAL flush,
	// one round trip). Few flushers make batches under load. With 32
	// concurrent callers, four flushers without a linger committed 7–8
	// tokens a transaction; two with the linger commit 12–19, for less
	// PostgreSQL and Go CPU per token and no more wall time per token
	// (BenchmarkCreateToken). Each caller is still answered only once the
	// COMMIT holding its row returned.
	flushers, linger := createFlushers, createLinger
	if opts.CreateFlushers > 0 {
		flushers = opts.CreateFlushers
	}
	if opts.CreateLinger != 0 {
		linger = max(0, opts.CreateLinger)
	}
	flushers = min(flushers, max(1, int(opts.MaxConns)-4))
	s.creates = batch.NewLinger(s.flushCreates, 64, flushers, linger)
	// Audit appends serialize on one lock; concurrent ones share it.
	s.audits = batch.New(s.flushAudit, 256, 1)
	// Token reads (every reveal makes one): past directReads in flight,
	// they queue to 4 readers and share queries (one round trip for the lot).
	s.gets = batch.New(s.flushGets, 64, 4)
	return s, nil
}

// MigrateURL applies migrations to the database at url (used by test
// templates and `obol migrate`).
func MigrateURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return Migrate(ctx, conn)
}

// Migrate applies pending migrations (see internal/migrate).
func Migrate(ctx context.Context, db migrate.DB) error {
	return migrate.Postgres(ctx, db, migrations, "migrations", 727274001)
}

// MigrateCommand applies this database's migrations.
const MigrateCommand = "obol migrate vault"

// Check runs no DDL: a *migrate.BehindError when a migration is missing.
func Check(ctx context.Context, db migrate.Querier) error {
	return migrate.CheckPostgres(ctx, db, migrations, "migrations", MigrateCommand)
}

// Version is the schema's version and the one this binary needs.
func Version(ctx context.Context, db migrate.Querier) (have, want int, err error) {
	return migrate.PostgresVersion(ctx, db, migrations, "migrations")
}

// Close finishes queued writes and closes the pool.
func (s *Store) Close() error {
	s.creates.Close()
	s.audits.Close()
	s.gets.Close()
	s.pool.Close()
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// InsertDEK stores a wrapped DEK.
func (s *Store) InsertDEK(ctx context.Context, d envelope.DEKRecord) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO deks (id, wrapped, kek_version, created_at) VALUES ($1, $2, $3, $4)`, d.ID, d.Wrapped, d.KEKVersion, d.CreatedAt)
	if isUnique(err) {
		return store.ErrDuplicate
	}
	return err
}

// GetDEK reads a wrapped DEK.
func (s *Store) GetDEK(ctx context.Context, id string) (envelope.DEKRecord, error) {
	d := envelope.DEKRecord{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT wrapped, kek_version, created_at FROM deks WHERE id = $1`, id).Scan(&d.Wrapped, &d.KEKVersion, &d.CreatedAt)
	return d, notFound(err)
}

// CreateMerchant inserts a merchant and its keys in one transaction.
func (s *Store) CreateMerchant(ctx context.Context, m store.Merchant, keys []store.APIKey) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		origins := m.AllowedOrigins
		if origins == nil {
			origins = []string{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO merchants (id, name, allowed_origins, created_at) VALUES ($1, $2, $3, $4)`, m.ID, m.Name, origins, m.CreatedAt); err != nil {
			if isUnique(err) {
				return store.ErrDuplicate
			}
			return err
		}
		for _, k := range keys {
			if _, err := tx.Exec(ctx, `INSERT INTO api_keys (hash, prefix, merchant_id, kind, created_at) VALUES ($1, $2, $3, $4, $5)`, k.Hash, k.Prefix, m.ID, k.Kind, k.CreatedAt); err != nil {
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
	err := s.pool.QueryRow(ctx, `SELECT name, allowed_origins, created_at FROM merchants WHERE id = $1`, id).Scan(&m.Name, &m.AllowedOrigins, &m.CreatedAt)
	return m, notFound(err)
}

// LookupAPIKey finds a key by hash.
func (s *Store) LookupAPIKey(ctx context.Context, hash []byte) (store.APIKey, error) {
	k := store.APIKey{Hash: hash}
	err := s.pool.QueryRow(ctx, `SELECT prefix, merchant_id, kind, created_at FROM api_keys WHERE hash = $1`, hash).Scan(&k.Prefix, &k.MerchantID, &k.Kind, &k.CreatedAt)
	return k, notFound(err)
}

// OriginAllowed reports whether any merchant lists origin.
func (s *Store) OriginAllowed(ctx context.Context, origin string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM merchants WHERE $1 = ANY (allowed_origins))`, origin).Scan(&ok)
	return ok, err
}

const tokenCols = `token, merchant_id, dek_id, ciphertext, brand, bin, last4, exp_month, exp_year, fingerprint, created_at, fingerprint_version`

func scanToken(row pgx.Row) (store.TokenRecord, error) {
	var r store.TokenRecord
	var m, y int16
	err := row.Scan(&r.Token, &r.MerchantID, &r.DEKID, &r.Ciphertext, &r.Brand, &r.BIN, &r.Last4, &m, &y, &r.Fingerprint, &r.CreatedAt, &r.FingerprintVersion)
	r.ExpMonth, r.ExpYear = int(m), int(y)
	return r, notFound(err)
}

// CreateToken inserts the idempotency record (if any) and the token
// atomically; a taken idempotency key writes nothing. Concurrent calls are
// committed together (group commit), each still all-or-nothing.
func (s *Store) CreateToken(ctx context.Context, r store.TokenRecord, idem *store.IdempotencyRecord) error {
	return s.creates.Do(ctx, createReq{rec: r, idem: idem})
}

const insertToken = `INSERT INTO tokens (` + tokenCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

// insertTokenIdem inserts the token only if its idempotency record was
// inserted by the same statement: 0 rows affected means the key was taken.
const insertTokenIdem = `WITH idem AS (
	INSERT INTO idempotency_keys (merchant_id, key, operation, request_mac, response, created_at)
	VALUES ($13, $14, $15, $16, $17, $18) ON CONFLICT DO NOTHING RETURNING 1)
INSERT INTO tokens (` + tokenCols + `)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 WHERE EXISTS (SELECT 1 FROM idem)`

// insertTokens inserts many tokens in one statement (tokenColumns).
const insertTokens = `INSERT INTO tokens (` + tokenCols + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[], $7::text[], $8::smallint[], $9::smallint[], $10::text[], $11::timestamptz[], $12::integer[])`

// tokenColumns is insertTokens' arguments: one array per column.
func tokenColumns(cs []createReq) []any {
	var (
		tokens, merchants, deks, brands, bins, last4s, fps []string
		cts                                                [][]byte
		months, years                                      []int16
		ats                                                []time.Time
		fvs                                                []int32
	)
	for _, c := range cs {
		r := c.rec
		fv := r.FingerprintVersion
		if fv == 0 {
			fv = 1
		}
		tokens, merchants, deks, cts = append(tokens, r.Token), append(merchants, r.MerchantID), append(deks, r.DEKID), append(cts, r.Ciphertext)
		brands, bins, last4s = append(brands, r.Brand), append(bins, r.BIN), append(last4s, r.Last4)
		months, years, fps = append(months, int16(r.ExpMonth)), append(years, int16(r.ExpYear)), append(fps, r.Fingerprint)
		ats, fvs = append(ats, r.CreatedAt), append(fvs, int32(fv))
	}
	return []any{tokens, merchants, deks, cts, brands, bins, last4s, months, years, fps, ats, fvs}
}

// createStatement is the one statement that creates c (atomic on its own).
func createStatement(c createReq) (string, []any) {
	r := c.rec
	fv := r.FingerprintVersion
	if fv == 0 {
		fv = 1
	}
	args := []any{r.Token, r.MerchantID, r.DEKID, r.Ciphertext, r.Brand, r.BIN, r.Last4, r.ExpMonth, r.ExpYear, r.Fingerprint, r.CreatedAt, fv}
	if c.idem == nil {
		return insertToken, args
	}
	i := c.idem
	return insertTokenIdem, append(args, i.MerchantID, i.Key, i.Operation, i.RequestMAC, i.Response, i.CreatedAt)
}

// flushCreates writes a batch in one (implicit) transaction and one round
// trip. Rows
// with a taken idempotency key are skipped by their own statement. If the
// transaction fails as a whole (a unique violation, a deadlock), each item
// is retried in its own transaction so one bad item fails alone.
func (s *Store) flushCreates(ctx context.Context, items []createReq) []error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	errs := make([]error, len(items))
	if len(items) > 1 {
		// A stable order of idempotency keys keeps concurrent batches from
		// waiting on each other in a cycle.
		order := make([]int, len(items))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool {
			ia, ib := items[order[a]].idem, items[order[b]].idem
			if ia == nil || ib == nil {
				return ia == nil && ib != nil
			}
			return ia.MerchantID+"\x00"+ia.Key < ib.MerchantID+"\x00"+ib.Key
		})
		// Outside an explicit transaction, PostgreSQL runs a pipeline that
		// ends in one Sync as one implicit transaction: committed at the Sync,
		// rolled back whole if any statement fails. One round trip, one commit.
		// The tokens without an idempotency key are one set-based INSERT
		// (one statement for the lot: PostgreSQL's per-statement work is
		// most of a batch's); each token with a key keeps its own
		// statement, which inserts nothing when the key is taken.
		b := &pgx.Batch{}
		var plain []createReq
		var keyed []int
		for _, i := range order {
			if items[i].idem == nil {
				plain = append(plain, items[i])
			} else {
				keyed = append(keyed, i)
			}
		}
		if len(plain) > 0 {
			b.Queue(insertTokens, tokenColumns(plain)...)
		}
		for _, i := range keyed {
			// Not b.Queue(createStatement(…)): that passes the argument
			// slice as one argument, and every batch failed over to the
			// one-by-one path.
			sql, args := createStatement(items[i])
			b.Queue(sql, args...)
		}
		res := s.pool.SendBatch(ctx, b)
		var err error
		if len(plain) > 0 {
			tag, e := res.Exec()
			switch {
			case e != nil:
				err = e
			case tag.RowsAffected() != int64(len(plain)):
				err = fmt.Errorf("postgres: %d of %d tokens inserted", tag.RowsAffected(), len(plain))
			}
		}
		for _, i := range keyed {
			if err != nil {
				break
			}
			tag, e := res.Exec()
			if e != nil {
				err = e
				break
			}
			if tag.RowsAffected() == 0 {
				errs[i] = store.ErrIdempotencyExists
			}
		}
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return errs
		}
		clear(errs)
	}
	for i, c := range items {
		errs[i] = s.createOne(ctx, c)
	}
	return errs
}

func (s *Store) createOne(ctx context.Context, c createReq) error {
	sql, args := createStatement(c)
	tag, err := s.pool.Exec(ctx, sql, args...)
	if isUnique(err) {
		return store.ErrDuplicate
	}
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrIdempotencyExists
	}
	return nil
}

// GetToken reads a merchant's token. Concurrent reads share one query; each
// is still answered from a snapshot taken after it was asked (a token
// deleted before the call began is not found).
func (s *Store) GetToken(ctx context.Context, merchantID, token string) (store.TokenRecord, error) {
	// A few reads in flight query at once, on the caller's goroutine (no
	// hand-off to a reader); more queue to the readers and share queries.
	n := s.reading.Add(1)
	defer s.reading.Add(-1)
	if n <= directReads {
		return scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE token = $1 AND merchant_id = $2`, token, merchantID))
	}
	r := &getReq{merchantID: merchantID, token: token}
	if err := s.gets.Do(ctx, r); err != nil {
		return store.TokenRecord{}, err
	}
	return r.rec, r.err
}

// directReads is how many GetToken calls in flight query on their own.
const directReads = 4

func (s *Store) flushGets(ctx context.Context, reqs []*getReq) []error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	errs := make([]error, len(reqs))
	if len(reqs) == 1 {
		r := reqs[0]
		r.rec, r.err = scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE token = $1 AND merchant_id = $2`, r.token, r.merchantID))
		return errs
	}
	tokens := make([]string, len(reqs))
	for i, r := range reqs {
		tokens[i] = r.token
	}
	rows, err := s.pool.Query(ctx, `SELECT `+tokenCols+` FROM tokens WHERE token = ANY($1)`, tokens)
	var found []store.TokenRecord
	if err == nil {
		found, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.TokenRecord, error) { return scanToken(row) })
	}
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for _, r := range reqs {
		r.err = store.ErrNotFound
		for _, rec := range found {
			if rec.Token == r.token && rec.MerchantID == r.merchantID {
				// Each caller gets its own copy of the ciphertext.
				rec.Ciphertext = append([]byte(nil), rec.Ciphertext...)
				r.rec, r.err = rec, nil
				break
			}
		}
	}
	return errs
}

// FindTokenByFingerprint returns the merchant's oldest token for a card.
func (s *Store) FindTokenByFingerprint(ctx context.Context, merchantID, fp string) (store.TokenRecord, error) {
	return scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE merchant_id = $1 AND fingerprint = $2 ORDER BY created_at, token LIMIT 1`, merchantID, fp))
}

// DeleteToken removes a merchant's token.
func (s *Store) DeleteToken(ctx context.Context, merchantID, token string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM tokens WHERE token = $1 AND merchant_id = $2`, token, merchantID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// CountTokens counts all tokens.
func (s *Store) CountTokens(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tokens`).Scan(&n)
	return n, err
}

// GetIdempotency reads an idempotency record.
func (s *Store) GetIdempotency(ctx context.Context, merchantID, key string) (store.IdempotencyRecord, error) {
	r := store.IdempotencyRecord{MerchantID: merchantID, Key: key}
	err := s.pool.QueryRow(ctx, `SELECT operation, request_mac, response, created_at FROM idempotency_keys WHERE merchant_id = $1 AND key = $2`, merchantID, key).
		Scan(&r.Operation, &r.RequestMAC, &r.Response, &r.CreatedAt)
	return r, notFound(err)
}

// PutIdempotency inserts an idempotency record.
func (s *Store) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO idempotency_keys (merchant_id, key, operation, request_mac, response, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		r.MerchantID, r.Key, r.Operation, r.RequestMAC, r.Response, r.CreatedAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrIdempotencyExists
	}
	return nil
}

// DEKsBelowVersion lists DEKs wrapped under an older KEK version.
func (s *Store) DEKsBelowVersion(ctx context.Context, version int, after string, limit int) ([]envelope.DEKRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, wrapped, kek_version, created_at FROM deks WHERE kek_version < $1 AND id > $2 ORDER BY id LIMIT $3`, version, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (envelope.DEKRecord, error) {
		var d envelope.DEKRecord
		err := r.Scan(&d.ID, &d.Wrapped, &d.KEKVersion, &d.CreatedAt)
		return d, err
	})
}

// RewrapDEK swaps a DEK's wrapped form if unchanged since it was read.
func (s *Store) RewrapDEK(ctx context.Context, id, oldWrapped, newWrapped string, newVersion int) error {
	tag, err := s.pool.Exec(ctx, `UPDATE deks SET wrapped = $3, kek_version = $4 WHERE id = $1 AND wrapped = $2`, id, oldWrapped, newWrapped, newVersion)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// KeyStats counts DEKs and tokens per KEK version.
func (s *Store) KeyStats(ctx context.Context) ([]store.KeyStat, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.kek_version, count(DISTINCT d.id), count(t.token)
		FROM deks d LEFT JOIN tokens t ON t.dek_id = d.id GROUP BY d.kek_version ORDER BY d.kek_version`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.KeyStat, error) {
		var k store.KeyStat
		err := r.Scan(&k.KEKVersion, &k.DEKs, &k.Tokens)
		return k, err
	})
}

// AppendAudit chains and appends events; concurrent calls share one
// transaction under the chain's advisory lock.
func (s *Store) AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	r := &auditReq{events: append([]audit.Event(nil), events...)}
	if err := s.audits.Do(ctx, r); err != nil {
		return nil, err
	}
	return r.events, nil
}

// RevealToken reads a merchant's token and appends the audit event that
// event builds from it, in one transaction under the chain's lock: the
// event is durable (committed) before RevealToken returns the record.
// Concurrent reveals and appends share that transaction. A token that does
// not exist, or is another merchant's, is ErrNotFound and records nothing.
// When event reports false, nothing is recorded for this token and
// recorded is false: the caller records the reveal itself (AppendAudit)
// before the card leaves. event runs with the chain's lock held: it must
// not block.
func (s *Store) RevealToken(ctx context.Context, merchantID, token string, event func(store.TokenRecord) (audit.Event, bool)) (rec store.TokenRecord, recorded bool, err error) {
	r := &auditReq{reveal: &revealReq{merchantID: merchantID, token: token, event: event}}
	if err := s.audits.Do(ctx, r); err != nil {
		return store.TokenRecord{}, false, err
	}
	if !r.reveal.found {
		return store.TokenRecord{}, false, store.ErrNotFound
	}
	return r.reveal.rec, r.reveal.recorded, nil
}

// flushReveals runs a batch that holds reveals in one transaction and two
// round trips: BEGIN, the chain's lock, the chain's head and the batch's
// tokens (read after the lock was granted, so a token deleted before the
// lock is not found); then the INSERT of every event, the reveals' built
// from their tokens, and COMMIT. A reveal is answered only after that
// COMMIT returned.
func (s *Store) flushReveals(ctx context.Context, reqs []*auditReq) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection left inside a transaction (an error below) is
	// destroyed on release, which rolls the transaction back.
	defer conn.Release()
	var tokens []string
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.reveal != nil && !seen[r.reveal.token] {
			seen[r.reveal.token] = true
			tokens = append(tokens, r.reveal.token)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_advisory_xact_lock(727274002)`)
	b.Queue(`SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`)
	b.Queue(`SELECT `+tokenCols+` FROM tokens WHERE token = ANY($1)`, tokens)
	br := conn.SendBatch(ctx, b)
	var (
		lastSeq  int64
		lastHash = audit.Genesis
		found    []store.TokenRecord
	)
	if _, err = br.Exec(); err == nil {
		if _, err = br.Exec(); err == nil {
			if err = br.QueryRow().Scan(&lastSeq, &lastHash); errors.Is(err, pgx.ErrNoRows) {
				err = nil
			}
			if err == nil {
				var rows pgx.Rows
				if rows, err = br.Query(); err == nil {
					found, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.TokenRecord, error) { return scanToken(row) })
				}
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	var appends []*auditReq
	for _, r := range reqs {
		if rv := r.reveal; rv != nil {
			r.events = nil
			rv.found, rv.recorded = false, false
			for _, rec := range found {
				if rec.Token == rv.token && rec.MerchantID == rv.merchantID {
					// Each caller gets its own copy of the ciphertext.
					rec.Ciphertext = append([]byte(nil), rec.Ciphertext...)
					rv.rec, rv.found = rec, true
					break
				}
			}
			if !rv.found {
				continue
			}
			ev, ok := rv.event(rv.rec)
			if !ok {
				continue
			}
			r.events, rv.recorded = []audit.Event{ev}, true
		}
		if len(r.events) > 0 {
			appends = append(appends, r)
		}
	}
	cols, seq, hash := chain(lastSeq, lastHash, appends)
	b = &pgx.Batch{}
	if len(appends) > 0 {
		b.Queue(insertAudit, cols[:]...)
	}
	b.Queue(`COMMIT`)
	br = conn.SendBatch(ctx, b)
	for range b.QueuedQueries {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.head.known, s.head.seq, s.head.hash = true, seq, hash
	return nil
}

func (s *Store) flushAudit(ctx context.Context, reqs []*auditReq) []error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s.headMu.Lock()
	defer s.headMu.Unlock()
	errs := make([]error, len(reqs))
	var err error
	reveals := false
	for _, r := range reqs {
		reveals = reveals || r.reveal != nil
	}
	switch {
	case reveals:
		err = s.flushReveals(ctx, reqs)
	case s.head.known:
		var ok bool
		if ok, err = s.appendAtHead(ctx, reqs); err == nil && !ok {
			// Another writer (a vaultd replica, an operator) moved the
			// head: read it under the lock.
			err = s.appendReadingHead(ctx, reqs)
		}
	default:
		err = s.appendReadingHead(ctx, reqs)
	}
	if err != nil {
		s.head.known = false // a commit of unknown outcome may have moved it
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

// chain assigns seq and hashes to every request's events after (seq, hash)
// and returns them as the columns of one INSERT … SELECT FROM unnest.
func chain(lastSeq int64, lastHash []byte, reqs []*auditReq) (cols [12]any, headSeq int64, headHash []byte) {
	var (
		seqs, keks                                                 []int64
		ats                                                        []time.Time
		actors, actions, merchants, tokens, purposes, hosts, notes []string
		prevs, hashes                                              [][]byte
	)
	for _, r := range reqs {
		audit.Chain(lastSeq, lastHash, r.events)
		for _, e := range r.events {
			seqs, ats, actors, actions = append(seqs, e.Seq), append(ats, e.At), append(actors, e.Actor), append(actions, e.Action)
			merchants, tokens, purposes, hosts = append(merchants, e.MerchantID), append(tokens, e.Token), append(purposes, e.Purpose), append(hosts, e.DestinationHost)
			keks, notes, prevs, hashes = append(keks, int64(e.KEKVersion)), append(notes, e.Detail), append(prevs, e.PrevHash), append(hashes, e.Hash)
			lastSeq, lastHash = e.Seq, e.Hash
		}
	}
	return [12]any{seqs, ats, actors, actions, merchants, tokens, purposes, hosts, keks, notes, prevs, hashes}, lastSeq, lastHash
}

const insertAudit = `INSERT INTO audit_events (seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash)
	SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::integer[], $10::text[], $11::bytea[], $12::bytea[])`

// appendAtHeadGuard makes insertAudit insert nothing unless the event at
// seq $13 (none: $13 = 0) with hash $14 is the chain's last. max(seq) is
// read from the primary key's last entry; NOT EXISTS (… WHERE seq > $13),
// which it replaces, was planned as a scan of the whole table, every
// append reading every audit event ever written (once per reveal batch).
const appendAtHeadGuard = `
	WHERE (SELECT coalesce(max(seq), 0) FROM audit_events) = $13
	  AND ($13 = 0 OR EXISTS (SELECT 1 FROM audit_events WHERE seq = $13 AND hash = $14))`

// appendAtHead appends after the head this store wrote last, in one round
// trip: BEGIN, the chain's lock, an INSERT that inserts nothing unless that
// head is still the chain's last event, COMMIT. The INSERT is a statement
// of its own after the lock, so it sees every append committed before the
// lock was granted. ok false: the head moved, nothing was written.
func (s *Store) appendAtHead(ctx context.Context, reqs []*auditReq) (ok bool, err error) {
	cols, seq, hash := chain(s.head.seq, s.head.hash, reqs)
	n := 0
	for _, r := range reqs {
		n += len(r.events)
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_advisory_xact_lock(727274002)`)
	b.Queue(insertAudit+appendAtHeadGuard, append(cols[:], s.head.seq, s.head.hash)...)
	b.Queue(`COMMIT`)
	br := s.pool.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	if _, err = br.Exec(); err == nil {
		if _, err = br.Exec(); err == nil {
			if tag, err = br.Exec(); err == nil {
				_, err = br.Exec()
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return false, err
	case tag.RowsAffected() != int64(n):
		return false, nil // nothing inserted (one statement: all or none)
	}
	s.head.seq, s.head.hash = seq, hash
	return true, nil
}

// appendReadingHead reads the chain's head under its lock and appends after it.
func (s *Store) appendReadingHead(ctx context.Context, reqs []*auditReq) error {
	var seq int64
	var hash []byte
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One chain across every vaultd replica: appends take turns.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(727274002)`); err != nil {
			return err
		}
		var lastSeq int64
		lastHash := audit.Genesis
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var cols [12]any
		cols, seq, hash = chain(lastSeq, lastHash, reqs)
		_, err = tx.Exec(ctx, insertAudit, cols[:]...)
		return err
	})
	if err == nil {
		s.head.known, s.head.seq, s.head.hash = true, seq, hash
	}
	return err
}

// ListAudit returns events after a seq, in seq order.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash
		FROM audit_events WHERE seq > $1 AND ($2 = '' OR merchant_id = $2) AND ($3 = '' OR token = $3) ORDER BY seq LIMIT $4`, f.AfterSeq, f.MerchantID, f.Token, f.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Event, error) {
		var e audit.Event
		err := r.Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &e.MerchantID, &e.Token, &e.Purpose, &e.DestinationHost, &e.KEKVersion, &e.Detail, &e.PrevHash, &e.Hash)
		e.At = e.At.UTC()
		return e, err
	})
}

// DEKStats lists DEKs with their token counts, oldest first.
func (s *Store) DEKStats(ctx context.Context) ([]store.DEKStat, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.id, d.kek_version, d.created_at, count(t.token)
		FROM deks d LEFT JOIN tokens t ON t.dek_id = d.id GROUP BY d.id ORDER BY d.created_at, d.id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.DEKStat, error) {
		var d store.DEKStat
		err := r.Scan(&d.ID, &d.KEKVersion, &d.CreatedAt, &d.Tokens)
		return d, err
	})
}

// TokensUnderOldDEKs lists tokens sealed under DEKs created before cutoff.
func (s *Store) TokensUnderOldDEKs(ctx context.Context, cutoff time.Time, after string, limit int) ([]store.TokenRecord, error) {
	return s.listTokens(ctx, `SELECT `+prefixed("t.", tokenCols)+` FROM tokens t JOIN deks d ON d.id = t.dek_id
		WHERE d.created_at < $1 AND t.token > $2 ORDER BY t.token LIMIT $3`, cutoff, after, limit)
}

// ReplaceCiphertext re-seals a token if it is still under oldDEK.
func (s *Store) ReplaceCiphertext(ctx context.Context, token, oldDEK, newDEK string, ct []byte) error {
	tag, err := s.pool.Exec(ctx, `UPDATE tokens SET dek_id = $3, ciphertext = $4 WHERE token = $1 AND dek_id = $2`, token, oldDEK, newDEK, ct)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DestroyDEKs deletes unused DEKs created before cutoff.
func (s *Store) DestroyDEKs(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM deks d WHERE d.created_at < $1 AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.dek_id = d.id)`, cutoff)
	return tag.RowsAffected(), err
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// TokensWithFingerprintBelow lists tokens fingerprinted under an older secret version.
func (s *Store) TokensWithFingerprintBelow(ctx context.Context, version int, after string, limit int) ([]store.TokenRecord, error) {
	return s.listTokens(ctx, `SELECT `+tokenCols+` FROM tokens WHERE fingerprint_version < $1 AND token > $2 ORDER BY token LIMIT $3`, version, after, limit)
}

func (s *Store) listTokens(ctx context.Context, query string, args ...any) ([]store.TokenRecord, error) {
	rows, err := s.pool.Query(ctx, query, args...)
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
	tag, err := s.pool.Exec(ctx, `UPDATE tokens SET fingerprint = $3, fingerprint_version = $4 WHERE token = $1 AND fingerprint = $2`, token, oldFP, newFP, version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// CreateTokenDeduped serializes lookups and inserts for one merchant and
// fingerprint with a transaction-scoped advisory lock.
func (s *Store) CreateTokenDeduped(ctx context.Context, r store.TokenRecord, idem *store.IdempotencyRecord) (*store.TokenRecord, error) {
	var existing *store.TokenRecord
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 727274003))`, r.MerchantID+"|"+r.Fingerprint); err != nil {
			return err
		}
		found, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE merchant_id = $1 AND fingerprint = $2 ORDER BY created_at, token LIMIT 1`, r.MerchantID, r.Fingerprint))
		switch {
		case err == nil:
			existing = &found
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		sql, args := createStatement(createReq{rec: r, idem: idem})
		tag, err := tx.Exec(ctx, sql, args...)
		if isUnique(err) {
			return store.ErrDuplicate
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrIdempotencyExists
		}
		return nil
	})
	return existing, err
}

// AuditHead is the last audit event (by primary key: O(1)).
func (s *Store) AuditHead(ctx context.Context) (audit.Event, error) {
	var e audit.Event
	err := s.pool.QueryRow(ctx, `SELECT seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash
		FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &e.MerchantID, &e.Token, &e.Purpose, &e.DestinationHost, &e.KEKVersion, &e.Detail, &e.PrevHash, &e.Hash)
	e.At = e.At.UTC()
	return e, notFound(err)
}
