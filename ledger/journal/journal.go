// Package journal is the ledger's double-entry model: accounts with one
// currency each, transactions of two or more postings that balance to zero
// per currency, balances, and the hash chain over the journal. Amounts are
// int64 minor units, signed: a debit is negative, a credit positive. Pure
// code, no storage; outside PCI scope (no card data at all).
package journal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/obolpay/obol/internal/money"
)

// Account flags.
const (
	// FlagNoNegativeAvailable refuses any transaction that would make the
	// account's available balance negative.
	FlagNoNegativeAvailable = 1 << iota
)

// Account is a ledger account.
type Account struct {
	ID        string
	Currency  string
	Flags     int
	Name      string
	CreatedAt time.Time
	Balance   Balance
}

// Balance is an account's balances in minor units.
type Balance struct {
	// Posted is the sum of posted postings.
	Posted int64
	// PendingDebits and PendingCredits are held by pending (two-phase)
	// transfers not yet posted or voided.
	PendingDebits  int64
	PendingCredits int64
}

// Available is what may be spent: posted minus what pending transfers hold
// against the account (incoming pending credits do not count until posted).
func (b Balance) Available() int64 { return b.Posted - b.PendingDebits }

// Posting is one leg of a transaction.
type Posting struct {
	AccountID string
	Amount    int64 // negative: debit; positive: credit
	Currency  string
}

// Kinds of transactions.
const (
	// KindPosted moves money now (the default).
	KindPosted = ""
	// KindPending holds money: one debit and one credit that only reserve.
	KindPending = "pending"
	// KindPostPending posts (part of) a pending transfer and releases its hold.
	KindPostPending = "post_pending"
	// KindVoidPending releases a pending transfer's hold.
	KindVoidPending = "void_pending"
)

// Transaction is an immutable journal entry.
type Transaction struct {
	// ID is the client's id: the idempotency key of the write.
	ID string
	// Kind is KindPosted, KindPending, KindPostPending or KindVoidPending.
	Kind string
	// PendingID names the pending transfer to post or void.
	PendingID string
	// ExpiresAt ends a pending transfer's hold (zero: never).
	ExpiresAt time.Time
	// Postings: for KindPosted and KindPending, the legs (a pending transfer
	// has exactly one debit and one credit); for KindPostPending, the amount
	// to post is the first posting's amount (no postings or 0: the full
	// amount; its account is ignored), and any further postings are extra
	// legs, balanced on their own, posted in the same transaction (a fee
	// taken at capture). The stored form is the legs actually posted.
	Postings    []Posting
	Description string
	Metadata    map[string]string
	Seq         int64
	PrevHash    []byte
	Hash        []byte
	CreatedAt   time.Time
}

// Errors a transaction can fail with. Each is a validation failure of that
// transaction alone.
var (
	ErrTooFewPostings     = errors.New("a transaction needs at least two postings")
	ErrZeroAmount         = errors.New("postings must have a non-zero amount")
	ErrUnbalanced         = errors.New("postings do not balance to zero in each currency")
	ErrUnknownCurrency    = errors.New("unknown currency")
	ErrCurrencyMismatch   = errors.New("posting currency differs from the account's")
	ErrUnknownAccount     = errors.New("no such account")
	ErrInsufficientFunds  = errors.New("the available balance would become negative")
	ErrOverflow           = errors.New("amount overflow")
	ErrIDRequired         = errors.New("a transaction id (client id) is required")
	ErrIdempotencyReused  = errors.New("this transaction id was already used with a different request")
	ErrDuplicateAccountID = errors.New("account id already exists")
	ErrPendingShape       = errors.New("a pending transfer has exactly one debit and one credit")
	ErrPendingNotFound    = errors.New("no such pending transfer")
	ErrPendingClosed      = errors.New("the pending transfer was already posted or voided")
	ErrPendingExpired     = errors.New("the pending transfer has expired")
	ErrPostExceedsPending = errors.New("cannot post more than the pending amount")
	ErrUnknownKind        = errors.New("unknown transaction kind")
)

// Pending is an open or closed pending transfer.
type Pending struct {
	ID        string
	Debit     string // account held against
	Credit    string
	Amount    int64
	Currency  string
	ExpiresAt time.Time
	Status    string // "pending", "posted", "voided"
}

// PendingFrom builds the hold described by a KindPending transaction.
func PendingFrom(t *Transaction) (Pending, error) {
	if len(t.Postings) != 2 {
		return Pending{}, ErrPendingShape
	}
	d, c := t.Postings[0], t.Postings[1]
	if d.Amount > 0 {
		d, c = c, d
	}
	if d.Amount >= 0 || c.Amount <= 0 || d.Amount != -c.Amount || d.Currency != c.Currency || d.AccountID == c.AccountID {
		return Pending{}, ErrPendingShape
	}
	return Pending{ID: t.ID, Debit: d.AccountID, Credit: c.AccountID, Amount: c.Amount, Currency: c.Currency, ExpiresAt: t.ExpiresAt, Status: "pending"}, nil
}

// Hold applies a pending transfer's hold to the accounts (checking the
// debit account's available balance when protected). On error nothing
// changes.
func Hold(p Pending, accounts map[string]*Account) error {
	d, okD := accounts[p.Debit]
	c, okC := accounts[p.Credit]
	switch {
	case !okD:
		return fmt.Errorf("%w: %s", ErrUnknownAccount, p.Debit)
	case !okC:
		return fmt.Errorf("%w: %s", ErrUnknownAccount, p.Credit)
	case d.Currency != p.Currency || c.Currency != p.Currency:
		return ErrCurrencyMismatch
	}
	pd, err1 := money.Add(d.Balance.PendingDebits, p.Amount)
	pc, err2 := money.Add(c.Balance.PendingCredits, p.Amount)
	if err1 != nil || err2 != nil {
		return ErrOverflow
	}
	if d.Flags&FlagNoNegativeAvailable != 0 && d.Balance.Posted-pd < 0 {
		return fmt.Errorf("%w: account %s", ErrInsufficientFunds, d.ID)
	}
	d.Balance.PendingDebits, c.Balance.PendingCredits = pd, pc
	return nil
}

// Release removes a pending transfer's hold.
func Release(p Pending, accounts map[string]*Account) {
	accounts[p.Debit].Balance.PendingDebits -= p.Amount
	accounts[p.Credit].Balance.PendingCredits -= p.Amount
}

// Validate checks what can be checked without accounts: id, at least two
// postings, non-zero amounts, known currencies, balanced per currency and
// no overflow.
func (t *Transaction) Validate() error {
	if t.ID == "" || len(t.ID) > 128 {
		return ErrIDRequired
	}
	switch t.Kind {
	case KindPosted:
	case KindPending:
		if _, err := PendingFrom(t); err != nil {
			return err
		}
	case KindPostPending, KindVoidPending:
		if t.PendingID == "" {
			return ErrPendingNotFound
		}
		if len(t.Postings) > 0 && t.Postings[0].Amount < 0 {
			return ErrZeroAmount
		}
		if len(t.Postings) <= 1 {
			return nil // the store derives the legs from the pending transfer
		}
		if t.Kind == KindVoidPending {
			return ErrPendingShape
		}
		// Extra legs posted atomically with the pending transfer (e.g. a fee
		// taken at capture): they balance on their own.
		return validateLegs(t.Postings[1:], 1)
	default:
		return ErrUnknownKind
	}
	return validateLegs(t.Postings, 2)
}

// validateLegs checks postings: at least min, non-zero amounts, known
// currencies, balanced per currency, no overflow.
func validateLegs(postings []Posting, min int) error {
	if len(postings) < min {
		return ErrTooFewPostings
	}
	sums := map[string]int64{}
	for _, p := range postings {
		if p.Amount == 0 {
			return ErrZeroAmount
		}
		if !money.Valid(p.Currency) {
			return fmt.Errorf("%w %q", ErrUnknownCurrency, p.Currency)
		}
		s, err := money.Add(sums[p.Currency], p.Amount)
		if err != nil {
			return ErrOverflow
		}
		sums[p.Currency] = s
	}
	for _, s := range sums {
		if s != 0 {
			return ErrUnbalanced
		}
	}
	return nil
}

// Apply checks postings against accounts and, if every check passes,
// updates the balances in place. On error nothing is changed.
func Apply(t *Transaction, accounts map[string]*Account) error {
	next := map[string]int64{}
	for _, p := range t.Postings {
		a, ok := accounts[p.AccountID]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownAccount, p.AccountID)
		}
		if a.Currency != p.Currency {
			return fmt.Errorf("%w: account %s is %s", ErrCurrencyMismatch, a.ID, a.Currency)
		}
		cur, seen := next[a.ID]
		if !seen {
			cur = a.Balance.Posted
		}
		v, err := money.Add(cur, p.Amount)
		if err != nil {
			return ErrOverflow
		}
		next[a.ID] = v
	}
	for id, v := range next {
		if a := accounts[id]; a.Flags&FlagNoNegativeAvailable != 0 && v-a.Balance.PendingDebits < 0 {
			return fmt.Errorf("%w: account %s", ErrInsufficientFunds, id)
		}
	}
	for id, v := range next {
		accounts[id].Balance.Posted = v
	}
	return nil
}

// Genesis is the prev_hash of the first transaction.
var Genesis = make([]byte, sha256.Size)

// RequestHash identifies a write's content (for idempotency): postings in
// order, description and sorted metadata.
func RequestHash(t *Transaction) []byte {
	h := sha256.New()
	put := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put([]byte(t.ID))
	put([]byte(t.Kind))
	put([]byte(t.PendingID))
	if !t.ExpiresAt.IsZero() {
		put([]byte(t.ExpiresAt.UTC().Format(time.RFC3339Nano)))
	}
	for _, p := range t.Postings {
		put([]byte(p.AccountID))
		put([]byte(p.Currency))
		var a [8]byte
		binary.BigEndian.PutUint64(a[:], uint64(p.Amount))
		put(a[:])
	}
	put([]byte(t.Description))
	keys := make([]string, 0, len(t.Metadata))
	for k := range t.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		put([]byte(k))
		put([]byte(t.Metadata[k]))
	}
	return h.Sum(nil)
}

// ChainHash is SHA-256 over the previous hash, the sequence number, the
// request hash and the time: the journal's hash chain.
func ChainHash(prev []byte, seq int64, requestHash []byte, at time.Time) []byte {
	h := sha256.New()
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	h.Write(n[:])
	h.Write(requestHash)
	h.Write([]byte(at.UTC().Format(time.RFC3339Nano)))
	return h.Sum(nil)
}

// ApplyKind applies one transaction to the in-memory state. On error the
// state is unchanged. For post and void, t's postings become the stored
// form (the legs actually posted; none for a void).
func ApplyKind(t *Transaction, accounts map[string]*Account, pendings map[string]*Pending, now time.Time) error {
	switch t.Kind {
	case KindPosted:
		return Apply(t, accounts)
	case KindPending:
		p, err := PendingFrom(t)
		if err != nil {
			return err
		}
		if err := Hold(p, accounts); err != nil {
			return err
		}
		pendings[p.ID] = &p
		t.Postings = nil // a hold posts nothing
		return nil
	}
	p, ok := pendings[t.PendingID]
	switch {
	case !ok:
		return ErrPendingNotFound
	case p.Status != "pending":
		return ErrPendingClosed
	}
	if t.Kind == KindVoidPending {
		Release(*p, accounts)
		p.Status = "voided"
		t.Postings = nil
		return nil
	}
	if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
		return ErrPendingExpired
	}
	amount := p.Amount
	if len(t.Postings) > 0 && t.Postings[0].Amount > 0 {
		amount = t.Postings[0].Amount
	}
	if amount > p.Amount {
		return ErrPostExceedsPending
	}
	Release(*p, accounts)
	posted := Transaction{ID: t.ID, Postings: []Posting{
		{AccountID: p.Debit, Amount: -amount, Currency: p.Currency},
		{AccountID: p.Credit, Amount: amount, Currency: p.Currency},
	}}
	if len(t.Postings) > 1 {
		posted.Postings = append(posted.Postings, t.Postings[1:]...)
	}
	if err := Apply(&posted, accounts); err != nil {
		// Restore the hold.
		accounts[p.Debit].Balance.PendingDebits += p.Amount
		accounts[p.Credit].Balance.PendingCredits += p.Amount
		return err
	}
	p.Status = "posted"
	t.Postings = posted.Postings
	return nil
}

// ValidateStored checks a transaction as stored: posted legs balance; holds
// and voids post nothing.
func ValidateStored(t Transaction) error {
	switch t.Kind {
	case KindPending, KindVoidPending:
		if len(t.Postings) != 0 {
			return errors.New("a hold or void must not post")
		}
		return nil
	case KindPostPending:
		t.Kind, t.PendingID = KindPosted, ""
	}
	return t.Validate()
}
