// Package sqlite is the ledger journal of the embedded default, on SQLite
// through modernc.org/sqlite (pure Go). It passes the same conformance
// suite as the PostgreSQL journal and shares its model code (ledger/journal);
// SQLite's single writer (immediate transactions) serializes postings.
// Outside PCI scope.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/internal/sqltime"
	"github.com/obolpay/obol/internal/sqltx"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

var _ store.Store = (*Store)(nil)

// Store is the SQLite journal.
type Store struct {
	db  *sql.DB
	now func() time.Time
}

// Open opens (creating) the database at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := migrate.OpenSQLite(ctx, path, migrations, "migrations")
	if err != nil {
		return nil, err
	}
	return &Store{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// CreateAccount creates an account idempotently by id.
func (s *Store) CreateAccount(ctx context.Context, a journal.Account) (journal.Account, error) {
	if a.ID == "" {
		return a, errors.New("account id is required")
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now()
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO accounts (id, currency, flags, name, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		a.ID, a.Currency, a.Flags, a.Name, sqltime.Format(a.CreatedAt))
	if err != nil {
		return a, err
	}
	got, err := s.Account(ctx, a.ID)
	if err != nil {
		return a, err
	}
	if n, _ := res.RowsAffected(); n == 0 && (got.Currency != a.Currency || got.Flags != a.Flags || got.Name != a.Name) {
		return got, journal.ErrDuplicateAccountID
	}
	return got, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func account(ctx context.Context, q querier, id string) (journal.Account, error) {
	a := journal.Account{ID: id}
	err := q.QueryRowContext(ctx, `SELECT currency, flags, name, posted, pending_debits, pending_credits, created_at FROM accounts WHERE id = ?`, id).
		Scan(&a.Currency, &a.Flags, &a.Name, &a.Balance.Posted, &a.Balance.PendingDebits, &a.Balance.PendingCredits, sqltime.Into(&a.CreatedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return a, journal.ErrUnknownAccount
	}
	return a, err
}

// Account reads an account and its balances.
func (s *Store) Account(ctx context.Context, id string) (journal.Account, error) {
	return account(ctx, s.db, id)
}

// Post applies a transaction atomically and idempotently by its id.
func (s *Store) Post(ctx context.Context, t journal.Transaction) (store.Result, error) {
	return s.PostWithEvents(ctx, t)
}

// PostWithEvents posts t and adds its events to the outbox in the same
// database transaction (a replay adds nothing).
func (s *Store) PostWithEvents(ctx context.Context, t journal.Transaction, events ...store.Event) (store.Result, error) {
	if !t.ExpiresAt.IsZero() {
		t.ExpiresAt = t.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	if err := t.Validate(); err != nil {
		return store.Result{}, err
	}
	var res store.Result
	err := sqltx.Run(ctx, s.db, func(tx *sql.Tx) error {
		rh := journal.RequestHash(&t)
		var ex journal.Transaction
		var exRH []byte
		err := tx.QueryRowContext(ctx, `SELECT seq, request_hash, hash, prev_hash, created_at FROM transactions WHERE id = ?`, t.ID).Scan(&ex.Seq, &exRH, &ex.Hash, &ex.PrevHash, sqltime.Into(&ex.CreatedAt))
		if err == nil {
			if string(exRH) != string(rh) {
				return journal.ErrIdempotencyReused
			}
			ex.ID = t.ID
			res = store.Result{Transaction: ex, Replayed: true}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var headSeq int64
		var headHash []byte
		if err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM journal_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
			return err
		}
		pendings := map[string]*journal.Pending{}
		ids := map[string]bool{}
		for _, p := range t.Postings {
			ids[p.AccountID] = true
		}
		if t.PendingID != "" {
			var p journal.Pending
			err := tx.QueryRowContext(ctx, `SELECT id, debit, credit, amount, currency, expires_at, status FROM pending_transfers WHERE id = ?`, t.PendingID).
				Scan(&p.ID, &p.Debit, &p.Credit, &p.Amount, &p.Currency, sqltime.Into(&p.ExpiresAt), &p.Status)
			switch {
			case err == nil:
				pendings[p.ID] = &p
				ids[p.Debit], ids[p.Credit] = true, true
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		accounts := map[string]*journal.Account{}
		for id := range ids {
			a, err := account(ctx, tx, id)
			if errors.Is(err, journal.ErrUnknownAccount) {
				continue // ApplyKind reports it
			}
			if err != nil {
				return err
			}
			accounts[id] = &a
		}
		before := map[string]journal.Balance{}
		for id, a := range accounts {
			before[id] = a.Balance
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		st := t
		if err := journal.ApplyKind(&st, accounts, pendings, now); err != nil {
			return err
		}
		st.Seq, st.PrevHash, st.CreatedAt = headSeq+1, headHash, now
		st.Hash = journal.ChainHash(headHash, st.Seq, journal.RequestHash(&st), now)
		meta := []byte("{}")
		if st.Metadata != nil {
			meta, _ = json.Marshal(st.Metadata)
		}
		var exp any
		if !st.ExpiresAt.IsZero() {
			exp = sqltime.Format(st.ExpiresAt)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO transactions (seq, id, kind, pending_id, expires_at, request_hash, description, metadata, prev_hash, hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			st.Seq, st.ID, st.Kind, st.PendingID, exp, rh, st.Description, string(meta), st.PrevHash, st.Hash, sqltime.Format(now)); err != nil {
			return err
		}
		for i, p := range st.Postings {
			if _, err := tx.ExecContext(ctx, `INSERT INTO postings (seq, idx, account_id, amount, currency) VALUES (?, ?, ?, ?, ?)`, st.Seq, i, p.AccountID, p.Amount, p.Currency); err != nil {
				return err
			}
		}
		switch st.Kind {
		case journal.KindPending:
			p := pendings[st.ID]
			if _, err := tx.ExecContext(ctx, `INSERT INTO pending_transfers (id, debit, credit, amount, currency, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, 'pending')`,
				p.ID, p.Debit, p.Credit, p.Amount, p.Currency, exp); err != nil {
				return err
			}
		case journal.KindPostPending, journal.KindVoidPending:
			if _, err := tx.ExecContext(ctx, `UPDATE pending_transfers SET status = ? WHERE id = ?`, pendings[st.PendingID].Status, st.PendingID); err != nil {
				return err
			}
		}
		for id, a := range accounts {
			if a.Balance != before[id] {
				if _, err := tx.ExecContext(ctx, `UPDATE accounts SET posted = ?, pending_debits = ?, pending_credits = ? WHERE id = ?`, a.Balance.Posted, a.Balance.PendingDebits, a.Balance.PendingCredits, id); err != nil {
					return err
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE journal_head SET seq = ?, hash = ? WHERE id = 1`, st.Seq, st.Hash); err != nil {
			return err
		}
		if err := insertEvents(ctx, tx, events); err != nil {
			return err
		}
		res = store.Result{Transaction: st}
		return nil
	})
	return res, err
}

// History lists an account's postings after a sequence number.
func (s *Store) History(ctx context.Context, accountID string, afterSeq int64, limit int) ([]store.Entry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT p.seq, t.id, p.amount, p.currency, t.created_at FROM postings p JOIN transactions t ON t.seq = p.seq
		WHERE p.account_id = ? AND p.seq > ? ORDER BY p.seq, p.idx LIMIT ?`, accountID, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Entry
	for rows.Next() {
		var e store.Entry
		if err := rows.Scan(&e.Seq, &e.TransactionID, &e.Amount, &e.Currency, sqltime.Into(&e.CreatedAt)); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ExpirePending voids expired holds through the journal.
func (s *Store) ExpirePending(ctx context.Context, now time.Time) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM pending_transfers WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY id LIMIT 1000`, sqltime.Format(now))
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return store.VoidExpired(ctx, s, ids)
}

// Verify recomputes balances, holds and the hash chain.
func (s *Store) Verify(ctx context.Context) (store.Report, error) {
	var rep store.Report
	rows, err := s.db.QueryContext(ctx, `SELECT seq, id, kind, pending_id, expires_at, description, metadata, prev_hash, hash, created_at FROM transactions ORDER BY seq`)
	if err != nil {
		return rep, err
	}
	var txs []journal.Transaction
	for rows.Next() {
		var t journal.Transaction
		var meta string
		if err := rows.Scan(&t.Seq, &t.ID, &t.Kind, &t.PendingID, sqltime.Into(&t.ExpiresAt), &t.Description, &meta, &t.PrevHash, &t.Hash, sqltime.Into(&t.CreatedAt)); err != nil {
			rows.Close()
			return rep, err
		}
		if len(meta) > 2 {
			_ = json.Unmarshal([]byte(meta), &t.Metadata)
		}
		txs = append(txs, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		// Without this check a failed read looks like the end of the
		// journal, and Verify passes on what it read so far.
		return rep, fmt.Errorf("verify: read transactions: %w", err)
	}
	chain := store.NewChainCheck()
	for _, t := range txs {
		prows, err := s.db.QueryContext(ctx, `SELECT account_id, amount, currency FROM postings WHERE seq = ? ORDER BY idx`, t.Seq)
		if err != nil {
			return rep, err
		}
		for prows.Next() {
			var p journal.Posting
			if err := prows.Scan(&p.AccountID, &p.Amount, &p.Currency); err != nil {
				prows.Close()
				return rep, err
			}
			t.Postings = append(t.Postings, p)
		}
		prows.Close()
		if err := prows.Err(); err != nil {
			return rep, fmt.Errorf("verify: read postings of seq %d: %w", t.Seq, err)
		}
		chain.Check(&rep, t)
	}
	arows, err := s.db.QueryContext(ctx, `SELECT a.id, a.posted, a.pending_debits, a.pending_credits,
		COALESCE((SELECT sum(amount) FROM postings WHERE account_id = a.id), 0),
		COALESCE((SELECT sum(amount) FROM pending_transfers WHERE status = 'pending' AND debit = a.id), 0),
		COALESCE((SELECT sum(amount) FROM pending_transfers WHERE status = 'pending' AND credit = a.id), 0)
		FROM accounts a ORDER BY a.id`)
	if err != nil {
		return rep, err
	}
	defer arows.Close()
	for arows.Next() {
		var id string
		var posted, pd, pc, sum, wantPD, wantPC int64
		if err := arows.Scan(&id, &posted, &pd, &pc, &sum, &wantPD, &wantPC); err != nil {
			return rep, err
		}
		rep.Accounts++
		if posted != sum {
			rep.Problems = append(rep.Problems, fmt.Sprintf("account %s: balance %d but postings sum to %d", id, posted, sum))
		}
		if pd != wantPD || pc != wantPC {
			rep.Problems = append(rep.Problems, fmt.Sprintf("account %s: holds %d/%d but open pending transfers make %d/%d", id, pd, pc, wantPD, wantPC))
		}
	}
	if err := arows.Err(); err != nil {
		return rep, fmt.Errorf("verify: read balances: %w", err)
	}
	return rep, nil
}

const txColumns = `seq, id, kind, pending_id, expires_at, description, metadata, prev_hash, hash, created_at`

type scanner interface{ Scan(...any) error }

func scanTx(r scanner) (journal.Transaction, error) {
	var t journal.Transaction
	var meta string
	if err := r.Scan(&t.Seq, &t.ID, &t.Kind, &t.PendingID, sqltime.Into(&t.ExpiresAt), &t.Description, &meta, &t.PrevHash, &t.Hash, sqltime.Into(&t.CreatedAt)); err != nil {
		return t, err
	}
	if len(meta) > 2 {
		_ = json.Unmarshal([]byte(meta), &t.Metadata)
	}
	return t, nil
}

func (s *Store) postings(ctx context.Context, seq int64) ([]journal.Posting, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT account_id, amount, currency FROM postings WHERE seq = ? ORDER BY idx`, seq)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []journal.Posting
	for rows.Next() {
		var p journal.Posting
		if err := rows.Scan(&p.AccountID, &p.Amount, &p.Currency); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Transaction reads a transaction and its postings by id.
func (s *Store) Transaction(ctx context.Context, id string) (journal.Transaction, error) {
	t, err := scanTx(s.db.QueryRowContext(ctx, `SELECT `+txColumns+` FROM transactions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrNoTransaction
	}
	if err != nil {
		return t, err
	}
	t.Postings, err = s.postings(ctx, t.Seq)
	return t, err
}

// indexedKeys are the metadata keys with an expression index.
var indexedKeys = map[string]bool{"acquirer_reference": true, "payout_id": true, "payment_id": true}

// findQuery selects transactions by a metadata key; for an indexed key the
// expression matches the index's (migrations), so that SQLite uses it.
func findQuery(key, value string, limit int) (string, []any) {
	if indexedKeys[key] {
		return `SELECT ` + txColumns + ` FROM transactions WHERE json_extract(metadata, '$.` + key + `') = ? ORDER BY seq LIMIT ?`, []any{value, limit}
	}
	path, _ := json.Marshal(key)
	return `SELECT ` + txColumns + ` FROM transactions WHERE json_extract(metadata, ?) = ? ORDER BY seq LIMIT ?`, []any{"$." + string(path), value, limit}
}

// FindTransactions lists transactions whose metadata has key = value.
func (s *Store) FindTransactions(ctx context.Context, key, value string, limit int) ([]journal.Transaction, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q, args := findQuery(key, value, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var txs []journal.Transaction
	for rows.Next() {
		t, err := scanTx(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		txs = append(txs, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
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
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM accounts WHERE substr(id, 1, ?) = ? AND id > ? ORDER BY id LIMIT ?`, len(prefix), prefix, after, limit)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]journal.Account, 0, len(ids))
	for _, id := range ids {
		a, err := account(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Pending reads a pending transfer by id.
func (s *Store) Pending(ctx context.Context, id string) (journal.Pending, error) {
	var p journal.Pending
	err := s.db.QueryRowContext(ctx, `SELECT id, debit, credit, amount, currency, expires_at, status FROM pending_transfers WHERE id = ?`, id).
		Scan(&p.ID, &p.Debit, &p.Credit, &p.Amount, &p.Currency, sqltime.Into(&p.ExpiresAt), &p.Status)
	if errors.Is(err, sql.ErrNoRows) {
		return p, store.ErrNoTransaction
	}
	return p, err
}

// PaymentIDs lists the payment ids in the journal's metadata (through the
// transactions_payment_id index).
func (s *Store) PaymentIDs(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT json_extract(metadata, '$.payment_id') AS pid FROM transactions
		WHERE json_extract(metadata, '$.payment_id') > ? ORDER BY pid LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// CreditsSince sums an account's credits by transactions created at or
// after since.
func (s *Store) CreditsSince(ctx context.Context, accountID string, since time.Time) (int64, error) {
	var sum int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(sum(p.amount), 0) FROM postings p JOIN transactions t ON t.seq = p.seq
		WHERE p.account_id = ? AND p.amount > 0 AND t.created_at >= ?`, accountID, sqltime.Format(since)).Scan(&sum)
	return sum, err
}
