// Package postgres is the ledger's journal on PostgreSQL. Transactions are
// applied in batches (application-level group commit): one database
// transaction locks the chain head and the batch's accounts once (in id
// order), applies each ledger transaction to in-memory balances (a failing
// one fails alone), and writes postings, balances and the chain in one round
// trip and one commit. The database enforces the invariants as well (see
// migrations). Outside PCI scope.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/obolpay/obol/internal/batch"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/ledger/journal"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies pending migrations.
func Migrate(ctx context.Context, db migrate.DB) error {
	return migrate.Postgres(ctx, db, migrations, "migrations", 727275001)
}

// MigrateURL migrates the database at url.
func MigrateURL(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return Migrate(ctx, conn)
}

// Result is the outcome of posting one transaction.
type Result struct {
	Transaction journal.Transaction
	// Replayed is true when the id was already posted with the same content.
	Replayed bool
}

type postReq struct {
	tx  journal.Transaction
	res Result
}

// Store is the ledger journal.
type Store struct {
	pool  *pgxpool.Pool
	posts *batch.Batcher[*postReq]
	now   func() time.Time
}

// Open connects, migrates and starts the batch writer.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("ledger postgres url: %w", err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ledger postgres is unreachable: %w", err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, now: time.Now}
	// One writer: batches take the chain head lock anyway.
	s.posts = batch.New(s.flush, 512, 1)
	return s, nil
}

// Close stops the writer and closes the pool.
func (s *Store) Close() error {
	s.posts.Close()
	s.pool.Close()
	return nil
}

// CreateAccount creates an account; the id is the client id: creating the
// same account again returns it, a different one with the same id is
// ErrDuplicateAccountID.
func (s *Store) CreateAccount(ctx context.Context, a journal.Account) (journal.Account, error) {
	if a.ID == "" {
		return a, errors.New("account id is required")
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now().UTC()
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO accounts (id, currency, flags, name, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`,
		a.ID, a.Currency, a.Flags, a.Name, a.CreatedAt)
	if err != nil {
		return a, err
	}
	got, err := s.Account(ctx, a.ID)
	if err != nil {
		return a, err
	}
	if tag.RowsAffected() == 0 && (got.Currency != a.Currency || got.Flags != a.Flags || got.Name != a.Name) {
		return got, journal.ErrDuplicateAccountID
	}
	return got, nil
}

// Account reads an account and its balance.
func (s *Store) Account(ctx context.Context, id string) (journal.Account, error) {
	a := journal.Account{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT currency, flags, name, posted, created_at FROM accounts WHERE id = $1`, id).
		Scan(&a.Currency, &a.Flags, &a.Name, &a.Balance.Posted, &a.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, journal.ErrUnknownAccount
	}
	return a, err
}

// Post applies a transaction, atomically and idempotently by its id.
func (s *Store) Post(ctx context.Context, t journal.Transaction) (Result, error) {
	if err := t.Validate(); err != nil {
		return Result{}, err
	}
	r := &postReq{tx: t}
	if err := s.posts.Do(ctx, r); err != nil {
		return Result{}, err
	}
	return r.res, nil
}

// flush applies a batch in one database transaction. If the database
// refuses the batch as a whole, each item is retried alone, so that one bad
// item fails alone.
func (s *Store) flush(ctx context.Context, reqs []*postReq) []error {
	errs := s.apply(ctx, reqs)
	if len(reqs) > 1 && isBatchError(errs) {
		for i, r := range reqs {
			errs[i] = s.apply(ctx, []*postReq{r})[0]
		}
	}
	return errs
}

// batchError marks a failure of the whole database transaction.
type batchError struct{ err error }

func (e batchError) Error() string { return e.err.Error() }
func (e batchError) Unwrap() error { return e.err }

func isBatchError(errs []error) bool {
	var be batchError
	return len(errs) > 0 && errors.As(errs[0], &be)
}

func (s *Store) apply(ctx context.Context, reqs []*postReq) []error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	errs := make([]error, len(reqs))
	failAll := func(err error) []error {
		for i := range errs {
			errs[i] = batchError{err}
		}
		return errs
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return failAll(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	var headSeq int64
	var headHash []byte
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM journal_head WHERE id = 1 FOR UPDATE`).Scan(&headSeq, &headHash); err != nil {
		return failAll(err)
	}
	// Replays: ids already posted.
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		ids[i] = r.tx.ID
	}
	existing := map[string]journal.Transaction{}
	// Joins on unnest keep these lookups on the indexes (a generic plan for
	// "= ANY($1)" may scan the whole table).
	rows, err := tx.Query(ctx, `SELECT t.id, t.seq, t.request_hash, t.hash, t.prev_hash, t.created_at FROM unnest($1::text[]) AS u(id) JOIN transactions t ON t.id = u.id`, ids)
	if err != nil {
		return failAll(err)
	}
	for rows.Next() {
		var t journal.Transaction
		var rh []byte
		if err := rows.Scan(&t.ID, &t.Seq, &rh, &t.Hash, &t.PrevHash, &t.CreatedAt); err != nil {
			rows.Close()
			return failAll(err)
		}
		t.Metadata = map[string]string{"request_hash": string(rh)}
		existing[t.ID] = t
	}
	rows.Close()
	// Every ledger write takes the journal_head row lock first (above), so
	// writers in every process are serialized by it: once we hold it, a
	// plain read sees every committed balance and nobody else can change one
	// before we write. Row locks on the accounts would only add work.
	accIDs := map[string]bool{}
	for _, r := range reqs {
		for _, p := range r.tx.Postings {
			accIDs[p.AccountID] = true
		}
	}
	sorted := make([]string, 0, len(accIDs))
	for id := range accIDs {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	accounts := map[string]*journal.Account{}
	rows, err = tx.Query(ctx, `SELECT a.id, a.currency, a.flags, a.posted FROM unnest($1::text[]) AS u(id) JOIN accounts a ON a.id = u.id`, sorted)
	if err != nil {
		return failAll(err)
	}
	for rows.Next() {
		a := &journal.Account{}
		if err := rows.Scan(&a.ID, &a.Currency, &a.Flags, &a.Balance.Posted); err != nil {
			rows.Close()
			return failAll(err)
		}
		accounts[a.ID] = a
	}
	rows.Close()
	before := map[string]int64{}
	for id, a := range accounts {
		before[id] = a.Balance.Posted
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	// Rows to write, as column arrays (set-based statements: one each).
	var (
		tSeq              []int64
		tID, tDesc        []string
		tRH, tPrev, tHash [][]byte
		tMeta             []string
		pSeq              []int64
		pIdx              []int32
		pAcct, pCur       []string
		pAmt              []int64
	)
	seq, prev := headSeq, headHash
	seen := map[string][]byte{}
	for i, r := range reqs {
		rh := journal.RequestHash(&r.tx)
		if ex, ok := existing[r.tx.ID]; ok {
			if ex.Metadata["request_hash"] != string(rh) {
				errs[i] = journal.ErrIdempotencyReused
				continue
			}
			ex.Metadata = nil
			r.res = Result{Transaction: ex, Replayed: true}
			continue
		}
		if h, ok := seen[r.tx.ID]; ok { // the same id twice in one batch
			if string(h) != string(rh) {
				errs[i] = journal.ErrIdempotencyReused
			} else {
				errs[i] = errReplayInBatch
			}
			continue
		}
		if err := journal.Apply(&r.tx, accounts); err != nil {
			errs[i] = err
			continue
		}
		seen[r.tx.ID] = rh
		seq++
		t := r.tx
		t.Seq, t.PrevHash, t.CreatedAt = seq, prev, now
		t.Hash = journal.ChainHash(prev, seq, rh, now)
		prev = t.Hash
		meta := []byte("{}")
		if t.Metadata != nil {
			meta, _ = json.Marshal(t.Metadata)
		}
		tSeq, tID, tRH, tDesc, tMeta, tPrev, tHash = append(tSeq, t.Seq), append(tID, t.ID), append(tRH, rh), append(tDesc, t.Description), append(tMeta, string(meta)), append(tPrev, t.PrevHash), append(tHash, t.Hash)
		for idx, p := range t.Postings {
			pSeq, pIdx, pAcct, pAmt, pCur = append(pSeq, t.Seq), append(pIdx, int32(idx)), append(pAcct, p.AccountID), append(pAmt, p.Amount), append(pCur, p.Currency)
		}
		r.res = Result{Transaction: t}
	}
	var uID []string
	var uPosted []int64
	for id, a := range accounts {
		if a.Balance.Posted != before[id] {
			uID, uPosted = append(uID, id), append(uPosted, a.Balance.Posted)
		}
	}
	if len(tSeq) > 0 {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO transactions (seq, id, request_hash, description, metadata, prev_hash, hash, created_at)
			SELECT u.seq, u.id, u.rh, u.descr, u.meta::jsonb, u.prev, u.hash, $8
			FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::bytea[], $7::bytea[]) AS u(seq, id, rh, descr, meta, prev, hash)`,
			tSeq, tID, tRH, tDesc, tMeta, tPrev, tHash, now)
		b.Queue(`INSERT INTO postings (seq, idx, account_id, amount, currency)
			SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[])`, pSeq, pIdx, pAcct, pAmt, pCur)
		b.Queue(`UPDATE accounts a SET posted = u.posted FROM unnest($1::text[], $2::bigint[]) AS u(id, posted) WHERE a.id = u.id`, uID, uPosted)
		b.Queue(`UPDATE journal_head SET seq = $1, hash = $2 WHERE id = 1`, seq, prev)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return failAll(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return failAll(err)
	}
	// Replays of an id first posted in this same batch.
	for i, r := range reqs {
		if errors.Is(errs[i], errReplayInBatch) {
			for _, o := range reqs {
				if o.tx.ID == r.tx.ID && o.res.Transaction.Seq != 0 {
					r.res = Result{Transaction: o.res.Transaction, Replayed: true}
					errs[i] = nil
					break
				}
			}
		}
	}
	return errs
}

var errReplayInBatch = errors.New("replay within batch")

// Entry is one posting in an account's history.
type Entry struct {
	Seq           int64
	TransactionID string
	Amount        int64
	Currency      string
	CreatedAt     time.Time
}

// History lists an account's postings after a sequence number (cursor), in
// journal order.
func (s *Store) History(ctx context.Context, accountID string, afterSeq int64, limit int) ([]Entry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT p.seq, t.id, p.amount, p.currency, t.created_at FROM postings p JOIN transactions t ON t.seq = p.seq
		WHERE p.account_id = $1 AND p.seq > $2 ORDER BY p.seq, p.idx LIMIT $3`, accountID, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.Seq, &e.TransactionID, &e.Amount, &e.Currency, &e.CreatedAt)
		return e, err
	})
}

// Report is the outcome of Verify.
type Report struct {
	Transactions int64
	Accounts     int64
	Problems     []string
}

// Verify recomputes every account balance from the postings and the whole
// hash chain from the transactions (including each request hash from its
// postings), and compares them with what is stored.
func (s *Store) Verify(ctx context.Context) (Report, error) {
	var rep Report
	prev := journal.Genesis
	var last int64
	for {
		rows, err := s.pool.Query(ctx, `SELECT seq, id, request_hash, description, metadata, prev_hash, hash, created_at FROM transactions WHERE seq > $1 ORDER BY seq LIMIT 1000`, last)
		if err != nil {
			return rep, err
		}
		type row struct {
			t  journal.Transaction
			rh []byte
		}
		var batch []row
		for rows.Next() {
			var r row
			var meta []byte
			if err := rows.Scan(&r.t.Seq, &r.t.ID, &r.rh, &r.t.Description, &meta, &r.t.PrevHash, &r.t.Hash, &r.t.CreatedAt); err != nil {
				rows.Close()
				return rep, err
			}
			if len(meta) > 2 {
				_ = json.Unmarshal(meta, &r.t.Metadata)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if len(batch) == 0 {
			break
		}
		for _, r := range batch {
			ps, err := s.postings(ctx, r.t.Seq)
			if err != nil {
				return rep, err
			}
			r.t.Postings = ps
			rep.Transactions++
			if r.t.Seq != last+1 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d: gap after %d", r.t.Seq, last))
			}
			if string(journal.RequestHash(&r.t)) != string(r.rh) {
				rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s): postings or description changed", r.t.Seq, r.t.ID))
			}
			if string(r.t.PrevHash) != string(prev) || string(journal.ChainHash(prev, r.t.Seq, r.rh, r.t.CreatedAt)) != string(r.t.Hash) {
				rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s): hash chain broken", r.t.Seq, r.t.ID))
			}
			if err := r.t.Validate(); err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s): %v", r.t.Seq, r.t.ID, err))
			}
			prev, last = r.t.Hash, r.t.Seq
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT a.id, a.posted, COALESCE(sum(p.amount), 0) FROM accounts a LEFT JOIN postings p ON p.account_id = a.id GROUP BY a.id, a.posted ORDER BY a.id`)
	if err != nil {
		return rep, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var stored, sum int64
		if err := rows.Scan(&id, &stored, &sum); err != nil {
			return rep, err
		}
		rep.Accounts++
		if stored != sum {
			rep.Problems = append(rep.Problems, fmt.Sprintf("account %s: balance %d but postings sum to %d", id, stored, sum))
		}
	}
	return rep, rows.Err()
}

func (s *Store) postings(ctx context.Context, seq int64) ([]journal.Posting, error) {
	rows, err := s.pool.Query(ctx, `SELECT account_id, amount, currency FROM postings WHERE seq = $1 ORDER BY idx`, seq)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (journal.Posting, error) {
		var p journal.Posting
		err := r.Scan(&p.AccountID, &p.Amount, &p.Currency)
		return p, err
	})
}

// IsConstraint reports whether err is a database invariant violation.
func IsConstraint(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23514" || pe.Code == "23503" || pe.Code == "42501")
}
