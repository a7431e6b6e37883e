// Package store defines the ledger journal's contract, met by PostgreSQL
// (production) and SQLite (the embedded default); storetest holds the one
// conformance suite both run. Outside PCI scope.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
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
	c.link(rep, t, "")
}

// link checks t's link to the previous transaction of its chain, its hash
// and its content, and makes it the chain's last.
func (c *ChainCheck) link(rep *Report, t journal.Transaction, where string) {
	want := journal.ChainHash(c.prev, t.Seq, journal.RequestHash(&t), t.CreatedAt)
	if !bytes.Equal(t.PrevHash, c.prev) || !bytes.Equal(want, t.Hash) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s)%s: hash chain broken (content or order changed)", t.Seq, t.ID, where))
	}
	if err := journal.ValidateStored(t); err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d (%s): %v", t.Seq, t.ID, err))
	}
	c.prev, c.last = t.Hash, t.Seq
}

// ChainHead is the stored head of one hash chain: the seq and hash of its
// last transaction (0 and the genesis hash for an empty chain).
type ChainHead struct {
	Chain int
	Seq   int64
	Hash  []byte
}

// ChainsCheck is ChainCheck for a journal partitioned into independent hash
// chains (PostgreSQL): fed every stored transaction in seq order with its
// chain, it checks each one's link to the previous transaction of the same
// chain (seq increases along a chain but is not contiguous: chains
// interleave, and a refused transfer leaves a gap), and then, in Heads,
// that every chain ends at its stored head. A modified transaction breaks
// its own hash; a deleted or reordered one breaks the next link of its
// chain, or its chain's head if it was the last; one moved to another
// chain breaks a link in both.
type ChainsCheck struct {
	chains map[int]*ChainCheck
	last   int64
}

// NewChainsCheck starts every chain at the genesis hash.
func NewChainsCheck() *ChainsCheck { return &ChainsCheck{chains: map[int]*ChainCheck{}} }

// Last is the seq of the last transaction checked, in any chain (0 before
// the first).
func (c *ChainsCheck) Last() int64 { return c.last }

// Check counts t (of chain) in rep and adds any problems it finds.
func (c *ChainsCheck) Check(rep *Report, chain int, t journal.Transaction) {
	rep.Transactions++
	if t.Seq <= c.last {
		rep.Problems = append(rep.Problems, fmt.Sprintf("seq %d: out of order after %d", t.Seq, c.last))
	}
	ch := c.chains[chain]
	if ch == nil {
		ch = NewChainCheck()
		c.chains[chain] = ch
	}
	ch.link(rep, t, fmt.Sprintf(" in chain %d", chain))
	c.last = max(c.last, t.Seq)
}

// Heads checks, after every transaction, that each chain ends at its
// stored head, and that no transaction names a chain without a head.
func (c *ChainsCheck) Heads(rep *Report, heads []ChainHead) {
	known := map[int]bool{}
	for _, h := range heads {
		known[h.Chain] = true
		last, prev := int64(0), journal.Genesis
		if ch := c.chains[h.Chain]; ch != nil {
			last, prev = ch.last, ch.prev
		}
		if h.Seq != last || !bytes.Equal(h.Hash, prev) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("chain %d: head is seq %d but the chain ends at seq %d (a transaction deleted, or the head changed)", h.Chain, h.Seq, last))
		}
	}
	var unknown []int
	for chain := range c.chains {
		if !known[chain] {
			unknown = append(unknown, chain)
		}
	}
	slices.Sort(unknown)
	for _, chain := range unknown {
		rep.Problems = append(rep.Problems, fmt.Sprintf("chain %d: no head, but transactions up to seq %d name it", chain, c.chains[chain].last))
	}
}
