// Package store defines the ledger journal's contract, met by PostgreSQL
// (production) and SQLite (the embedded default); storetest holds the one
// conformance suite both run. Outside PCI scope.
package store

import (
	"context"
	"errors"
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
