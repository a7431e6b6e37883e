// Package store defines the ledger journal's contract, met by PostgreSQL
// (production) and SQLite (the embedded default); storetest holds the one
// conformance suite both run. Outside PCI scope.
package store

import (
	"context"
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

// Store is the journal contract.
type Store interface {
	CreateAccount(ctx context.Context, a journal.Account) (journal.Account, error)
	Account(ctx context.Context, id string) (journal.Account, error)
	Post(ctx context.Context, t journal.Transaction) (Result, error)
	History(ctx context.Context, accountID string, afterSeq int64, limit int) ([]Entry, error)
	ExpirePending(ctx context.Context, now time.Time) (int, error)
	Verify(ctx context.Context) (Report, error)
	Close() error
}
