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
	"github.com/obolpay/obol/ledger/store"
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

// Result, Entry and Report are the store contract's types.
type (
	Result = store.Result
	Entry  = store.Entry
	Report = store.Report
)

var _ store.Store = (*Store)(nil)

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
	err := s.pool.QueryRow(ctx, `SELECT currency, flags, name, posted, pending_debits, pending_credits, created_at FROM accounts WHERE id = $1`, id).
		Scan(&a.Currency, &a.Flags, &a.Name, &a.Balance.Posted, &a.Balance.PendingDebits, &a.Balance.PendingCredits, &a.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, journal.ErrUnknownAccount
	}
	return a, err
}

// Post applies a transaction, atomically and idempotently by its id.
func (s *Store) Post(ctx context.Context, t journal.Transaction) (Result, error) {
	if !t.ExpiresAt.IsZero() {
		// The database keeps microseconds: hash what is stored.
		t.ExpiresAt = t.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
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
	// Every ledger write takes this row lock first, so writers in every
	// process are serialized by it: once we hold it, plain reads see every
	// committed balance and nobody else can change one before we write.
	var headSeq int64
	var headHash []byte
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM journal_head WHERE id = 1 FOR UPDATE`).Scan(&headSeq, &headHash); err != nil {
		return failAll(err)
	}
	ids := make([]string, 0, len(reqs))
	pendingIDs := []string{}
	for _, r := range reqs {
		ids = append(ids, r.tx.ID)
		if r.tx.PendingID != "" {
			pendingIDs = append(pendingIDs, r.tx.PendingID)
		}
	}
	// Replays: ids already posted. (Joins on unnest keep these lookups on
	// the indexes; a generic plan for "= ANY($1)" may scan the table.)
	existing := map[string]storedTx{}
	rows, err := tx.Query(ctx, `SELECT t.id, t.seq, t.request_hash, t.hash, t.prev_hash, t.created_at FROM unnest($1::text[]) AS u(id) JOIN transactions t ON t.id = u.id`, ids)
	if err != nil {
		return failAll(err)
	}
	for rows.Next() {
		var st storedTx
		if err := rows.Scan(&st.t.ID, &st.t.Seq, &st.requestHash, &st.t.Hash, &st.t.PrevHash, &st.t.CreatedAt); err != nil {
			rows.Close()
			return failAll(err)
		}
		existing[st.t.ID] = st
	}
	rows.Close()
	if err := rows.Err(); err != nil { // a partial read would miss a replay
		return failAll(err)
	}
	pendings := map[string]*journal.Pending{}
	if len(pendingIDs) > 0 {
		rows, err := tx.Query(ctx, `SELECT p.id, p.debit, p.credit, p.amount, p.currency, p.expires_at, p.status FROM unnest($1::text[]) AS u(id) JOIN pending_transfers p ON p.id = u.id`, pendingIDs)
		if err != nil {
			return failAll(err)
		}
		for rows.Next() {
			var p journal.Pending
			var exp *time.Time
			if err := rows.Scan(&p.ID, &p.Debit, &p.Credit, &p.Amount, &p.Currency, &exp, &p.Status); err != nil {
				rows.Close()
				return failAll(err)
			}
			if exp != nil {
				p.ExpiresAt = *exp
			}
			pendings[p.ID] = &p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return failAll(err)
		}
	}
	accIDs := map[string]bool{}
	for _, r := range reqs {
		for _, p := range r.tx.Postings {
			accIDs[p.AccountID] = true
		}
	}
	for _, p := range pendings {
		accIDs[p.Debit], accIDs[p.Credit] = true, true
	}
	sorted := make([]string, 0, len(accIDs))
	for id := range accIDs {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	accounts := map[string]*journal.Account{}
	rows, err = tx.Query(ctx, `SELECT a.id, a.currency, a.flags, a.posted, a.pending_debits, a.pending_credits FROM unnest($1::text[]) AS u(id) JOIN accounts a ON a.id = u.id`, sorted)
	if err != nil {
		return failAll(err)
	}
	for rows.Next() {
		a := &journal.Account{}
		if err := rows.Scan(&a.ID, &a.Currency, &a.Flags, &a.Balance.Posted, &a.Balance.PendingDebits, &a.Balance.PendingCredits); err != nil {
			rows.Close()
			return failAll(err)
		}
		accounts[a.ID] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return failAll(err)
	}
	before := map[string]journal.Balance{}
	for id, a := range accounts {
		before[id] = a.Balance
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var w writes
	seq, prev := headSeq, headHash
	seen := map[string][]byte{}
	newPendings := map[string]bool{}
	closed := map[string]string{} // pending id -> new status
	for i, r := range reqs {
		rh := journal.RequestHash(&r.tx)
		if ex, ok := existing[r.tx.ID]; ok {
			if string(ex.requestHash) != string(rh) {
				errs[i] = journal.ErrIdempotencyReused
				continue
			}
			r.res = Result{Transaction: ex.t, Replayed: true}
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
		t := r.tx
		if err := journal.ApplyKind(&t, accounts, pendings, now); err != nil {
			errs[i] = err
			continue
		}
		switch t.Kind {
		case journal.KindPending:
			newPendings[t.ID] = true
		case journal.KindPostPending:
			closed[t.PendingID] = "posted"
		case journal.KindVoidPending:
			closed[t.PendingID] = "voided"
		}
		seen[t.ID] = rh
		seq++
		t.Seq, t.PrevHash, t.CreatedAt = seq, prev, now.UTC()
		t.Hash = journal.ChainHash(prev, seq, journal.RequestHash(&t), now)
		prev = t.Hash
		w.add(t, rh)
		r.res = Result{Transaction: t}
	}
	for id, a := range accounts {
		if a.Balance != before[id] {
			w.uID = append(w.uID, id)
			w.uPosted, w.uPD, w.uPC = append(w.uPosted, a.Balance.Posted), append(w.uPD, a.Balance.PendingDebits), append(w.uPC, a.Balance.PendingCredits)
		}
	}
	for id := range newPendings {
		p := pendings[id]
		var exp *time.Time
		if !p.ExpiresAt.IsZero() {
			e := p.ExpiresAt
			exp = &e
		}
		w.pendIns = append(w.pendIns, []any{p.ID, p.Debit, p.Credit, p.Amount, p.Currency, exp, p.Status})
	}
	for id, st := range closed {
		w.pendUpd = append(w.pendUpd, [2]string{id, st})
	}
	if len(w.tSeq) > 0 {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO transactions (seq, id, kind, pending_id, expires_at, request_hash, description, metadata, prev_hash, hash, created_at)
			SELECT u.seq, u.id, u.kind, u.pid, u.exp, u.rh, u.descr, u.meta::jsonb, u.prev, u.hash, $11
			FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[], $7::text[], $8::text[], $9::bytea[], $10::bytea[])
			AS u(seq, id, kind, pid, exp, rh, descr, meta, prev, hash)`,
			w.tSeq, w.tID, w.tKind, w.tPID, w.tExp, w.tRH, w.tDesc, w.tMeta, w.tPrev, w.tHash, now)
		if len(w.pSeq) > 0 {
			b.Queue(`INSERT INTO postings (seq, idx, account_id, amount, currency)
				SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[])`, w.pSeq, w.pIdx, w.pAcct, w.pAmt, w.pCur)
		}
		for _, p := range w.pendIns {
			b.Queue(`INSERT INTO pending_transfers (id, debit, credit, amount, currency, expires_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7)`, p...)
		}
		for _, u := range w.pendUpd {
			b.Queue(`UPDATE pending_transfers SET status = $2 WHERE id = $1`, u[0], u[1])
		}
		b.Queue(`UPDATE accounts a SET posted = u.posted, pending_debits = u.pd, pending_credits = u.pc
			FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, posted, pd, pc) WHERE a.id = u.id`, w.uID, w.uPosted, w.uPD, w.uPC)
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

type storedTx struct {
	t           journal.Transaction
	requestHash []byte
}

// writes are the rows of a batch, as column arrays (set-based statements).
type writes struct {
	tSeq                    []int64
	tID, tKind, tPID, tDesc []string
	tExp                    []*time.Time
	tRH, tPrev, tHash       [][]byte
	tMeta                   []string
	pSeq                    []int64
	pIdx                    []int32
	pAcct, pCur             []string
	pAmt                    []int64
	uID                     []string
	uPosted, uPD, uPC       []int64
	pendIns                 [][]any
	pendUpd                 [][2]string
}

func (w *writes) add(t journal.Transaction, rh []byte) {
	meta := []byte("{}")
	if t.Metadata != nil {
		meta, _ = json.Marshal(t.Metadata)
	}
	var exp *time.Time
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt
		exp = &e
	}
	w.tSeq, w.tID, w.tKind, w.tPID, w.tExp = append(w.tSeq, t.Seq), append(w.tID, t.ID), append(w.tKind, t.Kind), append(w.tPID, t.PendingID), append(w.tExp, exp)
	w.tRH, w.tDesc, w.tMeta, w.tPrev, w.tHash = append(w.tRH, rh), append(w.tDesc, t.Description), append(w.tMeta, string(meta)), append(w.tPrev, t.PrevHash), append(w.tHash, t.Hash)
	for idx, p := range t.Postings {
		w.pSeq, w.pIdx, w.pAcct, w.pAmt, w.pCur = append(w.pSeq, t.Seq), append(w.pIdx, int32(idx)), append(w.pAcct, p.AccountID), append(w.pAmt, p.Amount), append(w.pCur, p.Currency)
	}
}

var errReplayInBatch = errors.New("replay within batch")

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

// Verify recomputes every account balance from the postings and the whole
// hash chain from the transactions (including each request hash from its
// postings), and compares them with what is stored.
func (s *Store) Verify(ctx context.Context) (Report, error) {
	var rep Report
	chain := store.NewChainCheck()
	for {
		rows, err := s.pool.Query(ctx, `SELECT seq, id, kind, pending_id, expires_at, description, metadata, prev_hash, hash, created_at FROM transactions WHERE seq > $1 ORDER BY seq LIMIT 1000`, chain.Last())
		if err != nil {
			return rep, err
		}
		var batch []journal.Transaction
		for rows.Next() {
			var t journal.Transaction
			var meta []byte
			var exp *time.Time
			if err := rows.Scan(&t.Seq, &t.ID, &t.Kind, &t.PendingID, &exp, &t.Description, &meta, &t.PrevHash, &t.Hash, &t.CreatedAt); err != nil {
				rows.Close()
				return rep, err
			}
			if exp != nil {
				t.ExpiresAt = exp.UTC()
			}
			if len(meta) > 2 {
				_ = json.Unmarshal(meta, &t.Metadata)
			}
			batch = append(batch, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			// Without this check a failed read looks like the end of the
			// journal, and Verify passes on what it read so far.
			return rep, fmt.Errorf("verify: read transactions after seq %d: %w", chain.Last(), err)
		}
		if len(batch) == 0 {
			break
		}
		for _, t := range batch {
			ps, err := s.postings(ctx, t.Seq)
			if err != nil {
				return rep, err
			}
			t.Postings = ps
			chain.Check(&rep, t)
		}
	}
	// Holds: each account's pending balances equal its open pending transfers.
	hrows, err := s.pool.Query(ctx, `SELECT a.id, a.pending_debits, a.pending_credits,
		COALESCE((SELECT sum(amount) FROM pending_transfers WHERE status = 'pending' AND debit = a.id), 0),
		COALESCE((SELECT sum(amount) FROM pending_transfers WHERE status = 'pending' AND credit = a.id), 0)
		FROM accounts a ORDER BY a.id`)
	if err != nil {
		return rep, err
	}
	for hrows.Next() {
		var id string
		var pd, pc, wantPD, wantPC int64
		if err := hrows.Scan(&id, &pd, &pc, &wantPD, &wantPC); err != nil {
			hrows.Close()
			return rep, err
		}
		if pd != wantPD || pc != wantPC {
			rep.Problems = append(rep.Problems, fmt.Sprintf("account %s: holds %d/%d but open pending transfers make %d/%d", id, pd, pc, wantPD, wantPC))
		}
	}
	hrows.Close()
	if err := hrows.Err(); err != nil {
		return rep, fmt.Errorf("verify: read holds: %w", err)
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
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("verify: read balances: %w", err)
	}
	return rep, nil
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

// ExpirePending voids every open pending transfer whose hold expired before
// now, through the journal (transaction id "expire:<pending id>", so a rerun
// replays instead of voiding twice). It returns how many it voided.
func (s *Store) ExpirePending(ctx context.Context, now time.Time) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM pending_transfers WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY id LIMIT 1000`, now)
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	return store.VoidExpired(ctx, s, ids)
}

const txColumns = `seq, id, kind, pending_id, expires_at, description, metadata, prev_hash, hash, created_at`

func scanTx(r pgx.Row) (journal.Transaction, error) {
	var t journal.Transaction
	var meta []byte
	var exp *time.Time
	if err := r.Scan(&t.Seq, &t.ID, &t.Kind, &t.PendingID, &exp, &t.Description, &meta, &t.PrevHash, &t.Hash, &t.CreatedAt); err != nil {
		return t, err
	}
	if exp != nil {
		t.ExpiresAt = exp.UTC()
	}
	t.CreatedAt = t.CreatedAt.UTC()
	if len(meta) > 2 {
		_ = json.Unmarshal(meta, &t.Metadata)
	}
	return t, nil
}

// Transaction reads a transaction and its postings by id.
func (s *Store) Transaction(ctx context.Context, id string) (journal.Transaction, error) {
	t, err := scanTx(s.pool.QueryRow(ctx, `SELECT `+txColumns+` FROM transactions WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, store.ErrNoTransaction
	}
	if err != nil {
		return t, err
	}
	t.Postings, err = s.postings(ctx, t.Seq)
	return t, err
}

// FindTransactions lists transactions whose metadata has key = value.
func (s *Store) FindTransactions(ctx context.Context, key, value string, limit int) ([]journal.Transaction, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q, _ := json.Marshal(map[string]string{key: value})
	rows, err := s.pool.Query(ctx, `SELECT `+txColumns+` FROM transactions WHERE metadata @> $1::jsonb ORDER BY seq LIMIT $2`, string(q), limit)
	if err != nil {
		return nil, err
	}
	txs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (journal.Transaction, error) { return scanTx(r) })
	if err != nil {
		return nil, err
	}
	for i := range txs {
		if txs[i].Postings, err = s.postings(ctx, txs[i].Seq); err != nil {
			return nil, err
		}
	}
	return txs, nil
}

// Accounts lists accounts by id prefix.
func (s *Store) Accounts(ctx context.Context, prefix, after string, limit int) ([]journal.Account, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT id, currency, flags, name, posted, pending_debits, pending_credits, created_at FROM accounts
		WHERE starts_with(id, $1) AND id > $2 ORDER BY id LIMIT $3`, prefix, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (journal.Account, error) {
		var a journal.Account
		err := r.Scan(&a.ID, &a.Currency, &a.Flags, &a.Name, &a.Balance.Posted, &a.Balance.PendingDebits, &a.Balance.PendingCredits, &a.CreatedAt)
		return a, err
	})
}

// Pending reads a pending transfer by id.
func (s *Store) Pending(ctx context.Context, id string) (journal.Pending, error) {
	var p journal.Pending
	var exp *time.Time
	err := s.pool.QueryRow(ctx, `SELECT id, debit, credit, amount, currency, expires_at, status FROM pending_transfers WHERE id = $1`, id).
		Scan(&p.ID, &p.Debit, &p.Credit, &p.Amount, &p.Currency, &exp, &p.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, store.ErrNoTransaction
	}
	if exp != nil {
		p.ExpiresAt = exp.UTC()
	}
	return p, err
}

// PaymentIDs lists the payment ids in the journal's metadata (through the
// transactions_payment_id index).
func (s *Store) PaymentIDs(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT metadata->>'payment_id' AS pid FROM transactions
		WHERE metadata->>'payment_id' IS NOT NULL AND metadata->>'payment_id' > $1 ORDER BY pid LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// CreditsSince sums an account's credits by transactions created at or
// after since.
func (s *Store) CreditsSince(ctx context.Context, accountID string, since time.Time) (int64, error) {
	var sum int64
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(sum(p.amount), 0)::bigint FROM postings p JOIN transactions t ON t.seq = p.seq
		WHERE p.account_id = $1 AND p.amount > 0 AND t.created_at >= $2`, accountID, since).Scan(&sum)
	return sum, err
}
