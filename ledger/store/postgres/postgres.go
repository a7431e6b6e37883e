// Package postgres is the ledger's journal on PostgreSQL. Transactions are
// applied in batches (application-level group commit): a batch is split
// into independent groups (no account, id or hold in common), each one
// database transaction that takes a free head of the journal's hash chains,
// reads the group's holds and accounts once, applies each ledger
// transaction to in-memory balances (a failing one fails alone), and
// writes postings, its chain and (by compare-and-set against what it read)
// balances and holds set-based: two round trips and one commit per group,
// the groups concurrently (see flush and apply). The database enforces the
// invariants as well (see migrations). Outside PCI scope.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
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

// MigrateCommand applies this database's migrations.
const MigrateCommand = "obol migrate ledger"

// Check runs no DDL: a *migrate.BehindError when a migration is missing.
func Check(ctx context.Context, db migrate.Querier) error {
	return migrate.CheckPostgres(ctx, db, migrations, "migrations", MigrateCommand)
}

// Version is the schema's version and the one this binary needs.
func Version(ctx context.Context, db migrate.Querier) (have, want int, err error) {
	return migrate.PostgresVersion(ctx, db, migrations, "migrations")
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
	tx     journal.Transaction
	events []store.Event // written with tx (not with a replay)
	res    Result
}

// writerLinger is how long a loaded batch stays open for one more
// transfer (at most 4 × in all; see batch.NewLinger). A batch costs a WAL
// flush and two round trips, milliseconds; this is a fraction of that.
const writerLinger = 300 * time.Microsecond

// writerGroups is how many groups a batch is split into at most (each its
// own database transaction on its own chain, concurrently), and
// minGroup the fewest transfers per group: a split costs each group a
// commit and the per-transaction work, worth it only when the group's
// share of the database work is larger than that.
const (
	writerGroups = 2
	minGroup     = 8
)

// Store is the ledger journal.
type Store struct {
	pool  *pgxpool.Pool
	posts *batch.Batcher[*postReq]
	now   func() time.Time
	// chains are the journal's hash chains (migration 6), rotated by a
	// random offset: group g of a batch prefers chains[g], so that
	// replicas start on different chains.
	chains []int32
	groups int
	// afterRead, when set (tests), runs between a batch's two round trips.
	afterRead func(lock bool)
	stats     struct {
		batches, items, statements, roundTrips atomic.Int64
		flushes, conflicts                     atomic.Int64
		readNanos, writeNanos                  atomic.Int64
	}
}

// Open connects, migrates and starts the batch writer.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenMode(ctx, url, migrate.Auto)
}

// OpenMode opens the ledger, migrating it (Auto) or only checking that
// its schema is current (Off: no DDL).
func OpenMode(ctx context.Context, url string, mode migrate.Mode) (*Store, error) {
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
	if mode == migrate.Off {
		err = Check(ctx, pool)
	} else {
		err = Migrate(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("ledger postgres: %w", err)
	}
	s := &Store{pool: pool, now: time.Now, groups: writerGroups}
	rows, err := pool.Query(ctx, `SELECT chain FROM journal_chains ORDER BY chain`)
	if err == nil {
		s.chains, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	}
	if err == nil && len(s.chains) == 0 {
		err = errors.New("the journal has no hash chain (journal_chains is empty)")
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("ledger postgres: read the chains: %w", err)
	}
	off := rand.IntN(len(s.chains))
	s.chains = slices.Concat(s.chains[off:], s.chains[:off])
	// One flusher: it splits each batch into independent groups and
	// commits them concurrently. Under load it lingers, so that the callers
	// of the batch just committed join the next one: a commit covers every
	// concurrent caller of its group, not half of them.
	s.posts = batch.NewLinger(s.flush, 1024, 1, writerLinger)
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
	return s.PostWithEvents(ctx, t)
}

// PostWithEvents posts t and adds its events to the outbox in the same
// database transaction (the batch's); a replay adds nothing.
func (s *Store) PostWithEvents(ctx context.Context, t journal.Transaction, events ...store.Event) (Result, error) {
	if !t.ExpiresAt.IsZero() {
		// The database keeps microseconds: hash what is stored.
		t.ExpiresAt = t.ExpiresAt.UTC().Truncate(time.Microsecond)
	}
	if err := t.Validate(); err != nil {
		return Result{}, err
	}
	r := &postReq{tx: t, events: events}
	if err := s.posts.Do(ctx, r); err != nil {
		return Result{}, err
	}
	return r.res, nil
}

// flush applies a batch: split into independent groups (see split), each
// group in one database transaction on its own chain, the groups
// concurrently.
func (s *Store) flush(ctx context.Context, reqs []*postReq) []error {
	s.stats.flushes.Add(1)
	groups := split(reqs, s.groups)
	if len(groups) == 1 {
		return s.flushGroup(ctx, reqs, 0)
	}
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for g, idx := range groups {
		wg.Go(func() {
			sub := make([]*postReq, len(idx))
			for i, j := range idx {
				sub[i] = reqs[j]
			}
			for i, err := range s.flushGroup(ctx, sub, g) {
				errs[idx[i]] = err
			}
		})
	}
	wg.Wait()
	return errs
}

// flushGroup applies a group in one database transaction. A group that
// met a concurrent writer (a row it read changed by a batch on another
// chain; the same id posted by a replica or another group: unique
// violation; a deadlock) runs again with its rows locked before they are
// read: by then the other has committed, and the rerun sees its balances
// and replays its ids. If the database refuses the group otherwise, each
// item is retried alone, so that one bad item fails alone.
func (s *Store) flushGroup(ctx context.Context, reqs []*postReq, lane int) []error {
	errs := s.apply(ctx, reqs, lane, false)
	for try := 0; try < 3 && len(errs) > 0 && isRetryable(errs[0]); try++ {
		s.stats.conflicts.Add(1)
		errs = s.apply(ctx, reqs, lane, true)
	}
	if len(reqs) > 1 && isBatchError(errs) {
		for i, r := range reqs {
			errs[i] = s.apply(ctx, []*postReq{r}, lane, true)[0]
			for try := 0; try < 3 && isRetryable(errs[i]); try++ {
				s.stats.conflicts.Add(1)
				errs[i] = s.apply(ctx, []*postReq{r}, lane, true)[0]
			}
		}
	}
	return errs
}

// isRetryable: the batch failed on a conflict with a concurrent writer.
func isRetryable(err error) bool {
	var be batchError
	var pe *pgconn.PgError
	return errors.As(err, &be) && errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "40P01" || pe.Code == "40001")
}

// split divides a batch into at most n groups with no account, transaction
// id or hold in common (the connected components of the batch, by the
// accounts its postings name, its ids and the holds it closes), balanced
// by size, each in the batch's order. Transfers to one hot account are one
// component: one group, one commit. A batch that closes a hold opened
// before it is not split: the hold's accounts are not known before it is
// read, and a group whose rows another group changes meanwhile would fail
// its compare-and-set and run again.
func split(reqs []*postReq, n int) [][]int {
	n = min(n, len(reqs)/minGroup)
	if n <= 1 {
		return [][]int{nil}
	}
	opened := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		if r.tx.Kind == journal.KindPending {
			opened[r.tx.ID] = true
		}
		if r.tx.PendingID != "" && !opened[r.tx.PendingID] {
			return [][]int{nil}
		}
	}
	parent := make([]int, len(reqs))
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	byID := make(map[string]int, len(reqs))        // transaction ids (and holds by their id)
	byAccount := make(map[string]int, 2*len(reqs)) // account ids
	join := func(owner map[string]int, i int, key string) {
		if j, ok := owner[key]; ok {
			if ri, rj := find(i), find(j); ri != rj {
				parent[max(ri, rj)] = min(ri, rj)
			}
			return
		}
		owner[key] = i
	}
	for i, r := range reqs {
		parent[i] = i
		join(byID, i, r.tx.ID)
		if r.tx.PendingID != "" {
			join(byID, i, r.tx.PendingID) // a hold and its post or void
		}
		for _, p := range r.tx.Postings {
			if p.AccountID != "" {
				join(byAccount, i, p.AccountID)
			}
		}
	}
	var roots []int
	for i := range reqs {
		if find(i) == i {
			roots = append(roots, i)
		}
	}
	if len(roots) == 1 {
		return [][]int{nil}
	}
	comps := make(map[int][]int, len(roots))
	for i := range reqs {
		r := find(i)
		comps[r] = append(comps[r], i)
	}
	// Largest first, each to the smallest group so far.
	slices.SortStableFunc(roots, func(a, b int) int { return len(comps[b]) - len(comps[a]) })
	groups := make([][]int, min(n, len(roots)))
	for _, r := range roots {
		g := 0
		for k := range groups {
			if len(groups[k]) < len(groups[g]) {
				g = k
			}
		}
		groups[g] = append(groups[g], comps[r]...)
	}
	for _, g := range groups {
		slices.Sort(g)
	}
	return groups
}

// batchError marks a failure of the whole database transaction.
type batchError struct{ err error }

func (e batchError) Error() string { return e.err.Error() }
func (e batchError) Unwrap() error { return e.err }

func isBatchError(errs []error) bool {
	var be batchError
	return len(errs) > 0 && errors.As(errs[0], &be)
}

// The statements of a batch (a group of one). Each batch is two round trips
// on one connection: a pipeline that begins the transaction, takes a free
// chain head, locks and reads what the batch needs (replays, holds,
// accounts) and takes its seqs, then, after the batch is applied in
// memory, a pipeline that writes every row set-based and commits. pgx
// prepares each statement once per connection.
const (
	// The first free chain in the writer's order of preference (a head
	// another batch holds is skipped, not waited for); none when every
	// chain is taken: the batch then waits for its preferred one
	// (sqlChainWait, in a transaction of its own, before any row lock).
	sqlChainFree = `SELECT chain, seq, hash FROM journal_chains ORDER BY array_position($1::int[], chain) FOR UPDATE SKIP LOCKED LIMIT 1`
	sqlChainWait = `SELECT chain, seq, hash FROM journal_chains WHERE chain = $1 FOR UPDATE`
	// Every statement of a batch (and the foreign-key and balance checks
	// it fires) touches a few rows by key. Planned on stale or missing
	// statistics (a fresh or just-loaded database: autovacuum analyzes a
	// minute later at best) the joins on unnest become hash joins over a
	// scan of the whole table, per batch; a cached generic plan keeps that
	// for the connection's life. The batch's transaction plans with index
	// lookups only (SET LOCAL: other work on the connection is unaffected).
	// A disabled node type costs 10^10 in the planner, which puts any plan
	// that still needs one above jit_above_cost: JIT compiling a statement
	// of a few rows costs 100+ ms. The batch's statements never gain from
	// JIT: it is off for the transaction as well.
	sqlPlanKeyed = `SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true)`
	// Replays: ids already posted. (Joins on unnest keep these lookups on
	// the indexes; a generic plan for "= ANY($1)" may scan the table.)
	sqlExisting = `SELECT t.id, t.seq, t.request_hash, t.hash, t.prev_hash, t.created_at FROM unnest($1::text[]) AS u(id) JOIN transactions t ON t.id = u.id`
	// The holds and accounts a batch decides on: read as of the statement
	// (sqlPendings, sqlAccounts), and written by compare-and-set (see
	// sqlClosePendings, sqlUpdateAccounts): a batch on another chain (in
	// this process or another) that changed one meanwhile makes the batch
	// fail and run again, then with the rows locked before they are read
	// (sqlPendingsLocked, sqlAccountsLocked), so that it goes through.
	sqlPendings = `SELECT p.id, p.debit, p.credit, p.amount, p.currency, p.expires_at, p.status FROM unnest($1::text[]) AS u(id) JOIN pending_transfers p ON p.id = u.id`
	// The accounts of the postings and of the holds named by the batch, in
	// one read (a post or void touches the accounts of its hold). Both arms
	// are driven by the id arrays through the primary keys, whatever the
	// plan: a generic plan for "id IN (… UNION …)" scanned every account,
	// per batch. An account named by both arms comes twice (same row).
	sqlAccounts = `SELECT a.id, a.currency, a.flags, a.posted, a.pending_debits, a.pending_credits, a.version
		FROM unnest($1::text[]) AS u(id) JOIN accounts a ON a.id = u.id
		UNION ALL
		SELECT a.id, a.currency, a.flags, a.posted, a.pending_debits, a.pending_credits, a.version
		FROM unnest($2::text[]) AS w(id) JOIN pending_transfers p ON p.id = w.id
		CROSS JOIN LATERAL (VALUES (p.debit), (p.credit)) AS v(id) JOIN accounts a ON a.id = v.id`
	// The locked reads lock in one order, holds by id, then accounts by
	// id, so that two locking batches never wait for each other; each row
	// by key, in the order of the sorted ids (a lateral lookup per id:
	// "JOIN … ORDER BY id FOR UPDATE" may walk the whole primary key in
	// its order instead). $1 of sqlPendingsLocked is sorted and distinct.
	sqlPendingsLocked = `SELECT p.id, p.debit, p.credit, p.amount, p.currency, p.expires_at, p.status
		FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)
		CROSS JOIN LATERAL (SELECT * FROM pending_transfers x WHERE x.id = u.id FOR UPDATE) AS p ORDER BY u.n`
	sqlAccountsLocked = `SELECT a.id, a.currency, a.flags, a.posted, a.pending_debits, a.pending_credits, a.version
		FROM (SELECT DISTINCT n.id FROM (SELECT unnest($1::text[])
			UNION ALL
			SELECT v.id FROM unnest($2::text[]) AS w(id) JOIN pending_transfers p ON p.id = w.id
			CROSS JOIN LATERAL (VALUES (p.debit), (p.credit)) AS v(id)) AS n(id) ORDER BY n.id) AS n
		CROSS JOIN LATERAL (SELECT * FROM accounts x WHERE x.id = n.id FOR UPDATE) AS a`
	// The batch's seqs, taken after its reads: a batch that touches an
	// account after another committed to it gets larger seqs (the
	// compare-and-set fails a batch that read before that commit), so seq
	// orders each account's postings (History's cursor) as well as each
	// chain.
	sqlSeqs     = `SELECT nextval('transactions_seq') FROM generate_series(1, $1::int)`
	sqlInsertTx = `INSERT INTO transactions (seq, id, kind, pending_id, expires_at, request_hash, description, metadata, prev_hash, hash, created_at, chain)
		SELECT u.seq, u.id, u.kind, u.pid, u.exp, u.rh, u.descr, u.meta::jsonb, u.prev, u.hash, $11, $12
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[], $7::text[], $8::text[], $9::bytea[], $10::bytea[])
		AS u(seq, id, kind, pid, exp, rh, descr, meta, prev, hash)`
	sqlInsertPostings = `INSERT INTO postings (seq, idx, account_id, amount, currency)
		SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[])`
	sqlInsertPendings = `INSERT INTO pending_transfers (id, debit, credit, amount, currency, expires_at, status)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[], $7::text[])`
	// Writes of rows that batches on other chains may write too, by
	// compare-and-set, in id order ($1 sorted: row locks in one order).
	sqlClosePendings = `WITH c AS (UPDATE pending_transfers p SET status = u.status FROM unnest($1::text[], $2::text[]) AS u(id, status)
		WHERE p.id = u.id AND p.status = 'pending' RETURNING 1)
		SELECT ledger_expect_rows(count(*), $3, 'holds') FROM c`
	// One row update per account per batch, however many of the batch's
	// transfers touch it (a hot account is locked and written once).
	// The compare-and-set is on the account's version, which every write
	// moves: balances changed and changed back meanwhile still fail it.
	sqlUpdateAccounts = `WITH c AS (UPDATE accounts a SET posted = u.posted, pending_debits = u.pd, pending_credits = u.pc, version = a.version + 1
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(id, posted, pd, pc, was)
		WHERE a.id = u.id AND a.version = u.was RETURNING 1)
		SELECT ledger_expect_rows(count(*), $6, 'accounts') FROM c`
	sqlUpdateHead = `UPDATE journal_chains SET seq = $1, hash = $2 WHERE chain = $3`
	// The outbox events of the batch's new transactions (an id already
	// there is kept), in the batch's order.
	sqlInsertEvents = `INSERT INTO event_outbox (id, type, merchant_id, object_type, object_id, object_version, data, created_at, next_attempt_at)
		SELECT u.id, u.typ, u.m, u.ot, u.oid, u.v, u.d, u.at, u.at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::timestamptz[]) WITH ORDINALITY AS u(id, typ, m, ot, oid, v, d, at, n)
		ORDER BY u.n ON CONFLICT (id) DO NOTHING`
)

// Stats counts the batch writer's work since Open: batches, transactions
// submitted, SQL statements and round trips to the database.
type Stats struct {
	// Batches are database transactions (a group of the writer's batch,
	// or one of its transfers retried alone), Items the transfers they
	// carried.
	Batches, Items, Statements, RoundTrips int64
	// Flushes are the writer's batches (each split into one or more
	// groups), Conflicts the groups run again because a concurrent writer
	// changed a row they read (or posted one of their ids).
	Flushes, Conflicts int64
	// ReadTime and WriteTime are the time spent in the first round trip
	// (begin, head lock, reads) and in the second (writes and commit).
	ReadTime, WriteTime time.Duration
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Batches: s.stats.batches.Load(), Items: s.stats.items.Load(), Statements: s.stats.statements.Load(), RoundTrips: s.stats.roundTrips.Load(),
		Flushes: s.stats.flushes.Load(), Conflicts: s.stats.conflicts.Load(),
		ReadTime: time.Duration(s.stats.readNanos.Load()), WriteTime: time.Duration(s.stats.writeNanos.Load())}
}

// send runs a pipeline (one round trip) and counts it.
func (s *Store) send(ctx context.Context, c *pgxpool.Conn, b *pgx.Batch) pgx.BatchResults {
	s.stats.roundTrips.Add(1)
	s.stats.statements.Add(int64(b.Len()))
	return c.SendBatch(ctx, b)
}

// errNoFreeChain: every chain head was taken by other batches; the batch
// is rolled back and run again waiting for its preferred chain.
var errNoFreeChain = errors.New("every chain head is taken")

// apply runs a batch on a free chain head, or, when every head is taken,
// waits for the lane's preferred chain.
func (s *Store) apply(ctx context.Context, reqs []*postReq, lane int, lock bool) []error {
	errs := s.applyOn(ctx, reqs, lane, false, lock)
	if len(errs) > 0 && errors.Is(errs[0], errNoFreeChain) {
		errs = s.applyOn(ctx, reqs, lane, true, lock)
	}
	return errs
}

// applyOn runs a batch in one database transaction: two round trips (three
// when it waits for a chain head). With lock, the holds and accounts are
// locked before they are read.
func (s *Store) applyOn(ctx context.Context, reqs []*postReq, lane int, wait, lock bool) []error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s.stats.batches.Add(1)
	s.stats.items.Add(int64(len(reqs)))
	errs := make([]error, len(reqs))
	failAll := func(err error) []error {
		for i := range errs {
			errs[i] = batchError{err}
		}
		return errs
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return failAll(err)
	}
	defer conn.Release()
	// A failed pipeline leaves the transaction open or aborted: roll it
	// back, and drop the connection if even that fails.
	committed := false
	defer func() {
		if committed {
			return
		}
		if _, err := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	ids := make([]string, 0, len(reqs))
	pendingIDs := []string{}
	postingIDs := []string{}
	seenAcct := map[string]bool{}
	for _, r := range reqs {
		ids = append(ids, r.tx.ID)
		if r.tx.PendingID != "" {
			pendingIDs = append(pendingIDs, r.tx.PendingID)
		}
		for _, p := range r.tx.Postings {
			if !seenAcct[p.AccountID] { // a hot account is read once
				seenAcct[p.AccountID] = true
				postingIDs = append(postingIDs, p.AccountID)
			}
		}
	}

	slices.Sort(pendingIDs) // the order the holds are locked in
	pendingIDs = slices.Compact(pendingIDs)

	// Round trip 1: begin, take a chain head, read, take the seqs. Each
	// chain's head is held by one batch at a time (in any process), so each
	// chain has one order. The holds and accounts are read as of each
	// statement (every committed change before it); round trip 2 writes
	// them by compare-and-set, so a batch that another changed them under
	// fails and runs again, then with them locked before they are read
	// (lock: nobody else can change one before it commits).
	pref := make([]int32, len(s.chains))
	for i := range pref {
		pref[i] = s.chains[(lane+i)%len(s.chains)]
	}
	var chain int32
	var headSeq int64
	var headHash []byte
	t0 := time.Now()
	b1 := &pgx.Batch{}
	if wait {
		// Every head was taken: wait for the preferred one before any row
		// lock (a batch holding rows while it waits for a head could wait
		// for a batch that waits for its rows).
		b0 := &pgx.Batch{}
		b0.Queue(`BEGIN`)
		b0.Queue(sqlChainWait, pref[0])
		br := s.send(ctx, conn, b0)
		_, err := br.Exec()
		if err == nil {
			err = br.QueryRow().Scan(&chain, &headSeq, &headHash)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return failAll(err)
		}
	} else {
		b1.Queue(`BEGIN`)
	}
	if !wait {
		b1.Queue(sqlChainFree, pref) // 8 rows: planned before the keyed-only settings
	}
	b1.Queue(sqlPlanKeyed)
	b1.Queue(sqlExisting, ids)
	qPendings, qAccounts := sqlPendings, sqlAccounts
	if lock {
		qPendings, qAccounts = sqlPendingsLocked, sqlAccountsLocked
	}
	if len(pendingIDs) > 0 {
		b1.Queue(qPendings, pendingIDs)
	}
	b1.Queue(qAccounts, postingIDs, pendingIDs)
	b1.Queue(sqlSeqs, len(reqs))
	br := s.send(ctx, conn, b1)
	existing := map[string]storedTx{}
	pendings := map[string]*journal.Pending{}
	accounts := map[string]*journal.Account{}
	versions := map[string]int64{} // as read: the compare-and-set's
	seqs := make([]int64, 0, len(reqs))
	err = func() error {
		if !wait {
			if _, err := br.Exec(); err != nil {
				return err
			}
			err := br.QueryRow().Scan(&chain, &headSeq, &headHash)
			if errors.Is(err, pgx.ErrNoRows) {
				return errNoFreeChain
			}
			if err != nil {
				return err
			}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var st storedTx
			if err := rows.Scan(&st.t.ID, &st.t.Seq, &st.requestHash, &st.t.Hash, &st.t.PrevHash, &st.t.CreatedAt); err != nil {
				rows.Close()
				return err
			}
			existing[st.t.ID] = st
		}
		rows.Close()
		if err := rows.Err(); err != nil { // a partial read would miss a replay
			return err
		}
		if len(pendingIDs) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				var p journal.Pending
				var exp *time.Time
				if err := rows.Scan(&p.ID, &p.Debit, &p.Credit, &p.Amount, &p.Currency, &exp, &p.Status); err != nil {
					rows.Close()
					return err
				}
				if exp != nil {
					p.ExpiresAt = *exp
				}
				pendings[p.ID] = &p
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			a := &journal.Account{}
			var v int64
			if err := rows.Scan(&a.ID, &a.Currency, &a.Flags, &a.Balance.Posted, &a.Balance.PendingDebits, &a.Balance.PendingCredits, &v); err != nil {
				rows.Close()
				return err
			}
			accounts[a.ID], versions[a.ID] = a, v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		seqs, err = pgx.AppendRows(seqs, rows, pgx.RowTo[int64])
		if err == nil && len(seqs) != len(reqs) {
			err = fmt.Errorf("took %d seqs for %d transactions", len(seqs), len(reqs))
		}
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errNoFreeChain) {
		errs[0] = err
		return errs
	}
	if err != nil {
		return failAll(err)
	}
	s.stats.readNanos.Add(int64(time.Since(t0)))
	if s.afterRead != nil {
		s.afterRead(lock)
	}

	before := map[string]journal.Balance{}
	for id, a := range accounts {
		before[id] = a.Balance
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var w writes
	seq, prev := headSeq, headHash
	next := 0 // the next of seqs
	seen := map[string][]byte{}
	newPendings := []string{}
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
			newPendings = append(newPendings, t.ID)
		case journal.KindPostPending:
			closed[t.PendingID] = "posted"
		case journal.KindVoidPending:
			closed[t.PendingID] = "voided"
		}
		seen[t.ID] = rh
		seq = seqs[next] // increasing, and above the chain's head
		next++
		t.Seq, t.PrevHash, t.CreatedAt = seq, prev, now.UTC()
		// The chain covers the stored content; for a posted transfer that
		// is the request itself, whose hash we already have.
		storedHash := rh
		if t.Kind != journal.KindPosted {
			storedHash = journal.RequestHash(&t)
		}
		t.Hash = journal.ChainHash(prev, seq, storedHash, now)
		prev = t.Hash
		w.add(t, rh)
		w.events = append(w.events, r.events...)
		r.res = Result{Transaction: t}
	}
	// Changed accounts and closed holds in id order (row locks in one
	// order), each with what the batch read (compare-and-set). An account
	// a written posting names is written even if its balance nets to the
	// same (+5 and −5 in one batch): its compare-and-set is what orders
	// the account's postings by seq across chains.
	touched := map[string]bool{}
	for id, a := range accounts {
		if a.Balance != before[id] {
			touched[id] = true
		}
	}
	for _, id := range w.pAcct {
		if accounts[id] != nil { // always: a posting to an unread account fails to apply
			touched[id] = true
		}
	}
	changed := make([]string, 0, len(touched))
	for id := range touched {
		changed = append(changed, id)
	}
	slices.Sort(changed)
	for _, id := range changed {
		a := accounts[id]
		w.uID, w.uWas = append(w.uID, id), append(w.uWas, versions[id])
		w.uPosted, w.uPD, w.uPC = append(w.uPosted, a.Balance.Posted), append(w.uPD, a.Balance.PendingDebits), append(w.uPC, a.Balance.PendingCredits)
	}
	var pi struct {
		id, debit, credit, currency, status []string
		amount                              []int64
		exp                                 []*time.Time
	}
	for _, id := range newPendings {
		p := pendings[id]
		var exp *time.Time
		if !p.ExpiresAt.IsZero() {
			e := p.ExpiresAt
			exp = &e
		}
		pi.id, pi.debit, pi.credit, pi.amount = append(pi.id, p.ID), append(pi.debit, p.Debit), append(pi.credit, p.Credit), append(pi.amount, p.Amount)
		pi.currency, pi.exp, pi.status = append(pi.currency, p.Currency), append(pi.exp, exp), append(pi.status, p.Status)
	}
	var cID, cStatus []string
	for _, id := range newPendings {
		delete(closed, id) // opened and closed in this batch: inserted closed
	}
	for id := range closed {
		cID = append(cID, id)
	}
	slices.Sort(cID)
	for _, id := range cID {
		cStatus = append(cStatus, closed[id])
	}

	// Round trip 2: every write of the batch, set-based, and the commit.
	// Nothing is acknowledged before the COMMIT's answer (the WAL flush).
	b2 := &pgx.Batch{}
	if len(w.tSeq) > 0 {
		b2.Queue(sqlInsertTx, w.tSeq, w.tID, w.tKind, w.tPID, w.tExp, w.tRH, w.tDesc, w.tMeta, w.tPrev, w.tHash, now, chain)
		if len(w.pSeq) > 0 {
			b2.Queue(sqlInsertPostings, w.pSeq, w.pIdx, w.pAcct, w.pAmt, w.pCur)
		}
		if len(pi.id) > 0 {
			b2.Queue(sqlInsertPendings, pi.id, pi.debit, pi.credit, pi.amount, pi.currency, pi.exp, pi.status)
		}
		if len(cID) > 0 {
			b2.Queue(sqlClosePendings, cID, cStatus, len(cID))
		}
		if len(w.uID) > 0 {
			b2.Queue(sqlUpdateAccounts, w.uID, w.uPosted, w.uPD, w.uPC, w.uWas, len(w.uID))
		}
		b2.Queue(sqlUpdateHead, seq, prev, chain)
		if len(w.events) > 0 {
			var e struct {
				id, typ, merchant, otype, oid, data []string
				version                             []int64
				at                                  []time.Time
			}
			for _, ev := range w.events {
				e.id, e.typ, e.merchant, e.otype, e.oid = append(e.id, ev.ID), append(e.typ, ev.Type), append(e.merchant, ev.MerchantID), append(e.otype, ev.ObjectType), append(e.oid, ev.ObjectID)
				e.data, e.version, e.at = append(e.data, string(ev.Data)), append(e.version, ev.ObjectVersion), append(e.at, ev.CreatedAt)
			}
			b2.Queue(sqlInsertEvents, e.id, e.typ, e.merchant, e.otype, e.oid, e.version, e.data, e.at)
		}
	}
	b2.Queue(`COMMIT`)
	t1 := time.Now()
	if err := s.send(ctx, conn, b2).Close(); err != nil {
		return failAll(err)
	}
	committed = true
	s.stats.writeNanos.Add(int64(time.Since(t1)))
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
	uWas                    []int64 // the versions read
	events                  []store.Event
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

// Verify recomputes every account balance from the postings and every hash
// chain from the transactions (including each request hash from its
// postings), checks that each chain ends at its head, and compares them
// with what is stored. It reads one snapshot (a repeatable-read, read-only
// transaction): writers may go on meanwhile.
func (s *Store) Verify(ctx context.Context) (Report, error) {
	var rep Report
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	chains := store.NewChainsCheck()
	for {
		rows, err := tx.Query(ctx, `SELECT seq, chain, id, kind, pending_id, expires_at, description, metadata, prev_hash, hash, created_at FROM transactions WHERE seq > $1 ORDER BY seq LIMIT 1000`, chains.Last())
		if err != nil {
			return rep, err
		}
		var batch []journal.Transaction
		var chainOf []int
		for rows.Next() {
			var t journal.Transaction
			var chain int
			var meta []byte
			var exp *time.Time
			if err := rows.Scan(&t.Seq, &chain, &t.ID, &t.Kind, &t.PendingID, &exp, &t.Description, &meta, &t.PrevHash, &t.Hash, &t.CreatedAt); err != nil {
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
			chainOf = append(chainOf, chain)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			// Without this check a failed read looks like the end of the
			// journal, and Verify passes on what it read so far.
			return rep, fmt.Errorf("verify: read transactions after seq %d: %w", chains.Last(), err)
		}
		if len(batch) == 0 {
			break
		}
		// The page's postings, in one read.
		ps := map[int64][]journal.Posting{}
		prows, err := tx.Query(ctx, `SELECT seq, account_id, amount, currency FROM postings WHERE seq BETWEEN $1 AND $2 ORDER BY seq, idx`, batch[0].Seq, batch[len(batch)-1].Seq)
		if err != nil {
			return rep, err
		}
		for prows.Next() {
			var seq int64
			var p journal.Posting
			if err := prows.Scan(&seq, &p.AccountID, &p.Amount, &p.Currency); err != nil {
				prows.Close()
				return rep, err
			}
			ps[seq] = append(ps[seq], p)
		}
		prows.Close()
		if err := prows.Err(); err != nil {
			return rep, fmt.Errorf("verify: read postings after seq %d: %w", chains.Last(), err)
		}
		for i, t := range batch {
			t.Postings = ps[t.Seq]
			chains.Check(&rep, chainOf[i], t)
		}
	}
	hrows, err := tx.Query(ctx, `SELECT chain, seq, hash FROM journal_chains ORDER BY chain`)
	if err != nil {
		return rep, err
	}
	heads, err := pgx.CollectRows(hrows, func(r pgx.CollectableRow) (store.ChainHead, error) {
		var h store.ChainHead
		err := r.Scan(&h.Chain, &h.Seq, &h.Hash)
		return h, err
	})
	if err != nil {
		return rep, fmt.Errorf("verify: read chain heads: %w", err)
	}
	chains.Heads(&rep, heads)
	// Holds: each account's pending balances equal its open pending transfers.
	hrows, err = tx.Query(ctx, `SELECT a.id, a.pending_debits, a.pending_credits,
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
	rows, err := tx.Query(ctx, `SELECT a.id, a.posted, COALESCE(sum(p.amount), 0) FROM accounts a LEFT JOIN postings p ON p.account_id = a.id GROUP BY a.id, a.posted ORDER BY a.id`)
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
