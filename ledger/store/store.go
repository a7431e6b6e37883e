// Package store defines the ledger journal's contract, met by PostgreSQL
// (production) and SQLite (the embedded default); storetest holds the one
// conformance suite both run. Outside PCI scope.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/obolpay/obol/ledger/journal"
)

// Result is the outcome of posting one transaction.
type Result struct {
	Transaction journal.Transaction
	// Replayed is true when the id was already posted with the same content.
	Replayed bool
}

// Entry is one posting in an account's history.
type Entry struct {
	Seq           int64
	TransactionID string
	Amount        int64
	Currency      string
	CreatedAt     time.Time
}

// Report is the outcome of Verify.
type Report struct {
	Transactions int64
	Accounts     int64
	Problems     []string
}

// ErrNoTransaction is returned for an unknown transaction id.
var ErrNoTransaction = errors.New("no such transaction")

// Store is the journal contract.
type Store interface {
	CreateAccount(ctx context.Context, a journal.Account) (journal.Account, error)
	Account(ctx context.Context, id string) (journal.Account, error)
	Post(ctx context.Context, t journal.Transaction) (Result, error)
	History(ctx context.Context, accountID string, afterSeq int64, limit int) ([]Entry, error)
	ExpirePending(ctx context.Context, now time.Time) (int, error)
	// Transaction reads a posted transaction (with its stored postings) by
	// id, or ErrNoTransaction.
	Transaction(ctx context.Context, id string) (journal.Transaction, error)
	// FindTransactions lists transactions whose metadata has key = value, in
	// journal order (at most limit).
	FindTransactions(ctx context.Context, key, value string, limit int) ([]journal.Transaction, error)
	// Accounts lists accounts whose id starts with prefix, ordered by id,
	// after the cursor id (at most limit).
	Accounts(ctx context.Context, prefix, after string, limit int) ([]journal.Account, error)
	// Pending reads a pending transfer (a hold) by the id of the
	// transaction that opened it, or ErrNoTransaction.
	Pending(ctx context.Context, id string) (journal.Pending, error)
	// PaymentIDs lists the distinct payment_id metadata values of the
	// journal's transactions, ordered, after the cursor (at most limit):
	// every payment the ledger knows of, for reconciliation.
	PaymentIDs(ctx context.Context, after string, limit int) ([]string, error)
	// CreditsSince sums the credits (positive postings) to an account by
	// transactions created at or after since.
	CreditsSince(ctx context.Context, accountID string, since time.Time) (int64, error)
	Verify(ctx context.Context) (Report, error)
	Disputes
	Outbox
	Close() error
}

// VoidExpired voids the given expired holds through the journal, with
// transaction id "expire:<pending id>" so that a rerun replays instead of
// voiding twice. It returns how many it voided.
func VoidExpired(ctx context.Context, s Store, pendingIDs []string) (int, error) {
	n := 0
	for _, id := range pendingIDs {
		r, err := s.Post(ctx, journal.Transaction{ID: "expire:" + id, Kind: journal.KindVoidPending, PendingID: id, Description: "hold expired"})
		switch {
		case err == nil && !r.Replayed:
			n++
		case err != nil && !errors.Is(err, journal.ErrPendingClosed):
			return n, err
		}
	}
	return n, nil
}

// ChainCheck is the one per-transaction check both backends' Verify run, fed
// the stored transactions (with their postings) in seq order: no gap in seq,
// an unbroken hash chain over the stored content (kind, pending id, expiry,
// description, metadata, postings), and content that validates as stored.
type ChainCheck struct {
	prev []byte
	last int64
}

// NewChainCheck starts a check at the genesis hash.
func NewChainCheck() *ChainCheck { return &ChainCheck{prev: journal.Genesis} }

// Last is the seq of the last transaction checked (0 before the first).
func (c *ChainCheck) Last() int64 { return c.last }

// Check counts t in rep and adds any problems it finds.
func (c *ChainCheck) Check(rep *Report, t journal.Transaction) {
	rep.Transactions++
	if t.Seq != c.last+1 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d: gap after %d", t.Seq, c.last))
	}
	want := journal.ChainHash(c.prev, t.Seq, journal.RequestHash(&t), t.CreatedAt)
	if !bytes.Equal(t.PrevHash, c.prev) || !bytes.Equal(want, t.Hash) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s): hash chain broken (content or order changed)", t.Seq, t.ID))
	}
	if err := journal.ValidateStored(t); err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s): %v", t.Seq, t.ID, err))
	}
	c.prev, c.last = t.Hash, t.Seq
}
