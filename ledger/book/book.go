// Package book is the payments chart of accounts on the ledger journal:
// which accounts a merchant and the platform have, and which balanced
// transactions each payment state change, settlement, fund release and
// payout posts. Every write has a deterministic journal id derived from the
// payment (or payout, or settlement line), so a retry replays instead of
// posting twice. Outside PCI scope: it never sees card data.
//
// Sign convention (the journal's): a credit is positive, a debit negative.
// Merchant accounts are liabilities (what the platform owes the merchant),
// so their balances are positive; asset accounts (acquirer receivable, bank)
// go negative as they grow.
package book

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/obolpay/obol/internal/money"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
)

// Merchant account kinds: merchant:<id>:<CUR>:<kind>.
const (
	Pending   = "pending"    // captured, not yet released (T+N)
	Available = "available"  // released, payable
	Reserve   = "reserve"    // rolling reserve
	InTransit = "in_transit" // paid out, not yet confirmed by the bank
)

// Platform account kinds: platform:<CUR>:<kind>.
const (
	Receivable   = "acquirer_receivable" // what acquirers owe for captures
	FeeRevenue   = "fee_revenue"         // the platform's fees
	Refunds      = "refunds"             // refunds owed through the acquirer, cleared by settlement
	Chargebacks  = "chargebacks"         // disputed funds, cleared by settlement
	AcquirerFees = "acquirer_fees"       // what acquirers charge (expense)
	Bank         = "bank"                // the platform's bank account
)

// MerchantKinds and PlatformKinds list every account the book opens.
var (
	MerchantKinds = []string{Pending, Available, Reserve, InTransit}
	PlatformKinds = []string{Receivable, FeeRevenue, Refunds, Chargebacks, AcquirerFees, Bank}
)

// MerchantAccount is the id of a merchant account.
func MerchantAccount(merchant, currency, kind string) string {
	return "merchant:" + merchant + ":" + currency + ":" + kind
}

// PlatformAccount is the id of a platform account.
func PlatformAccount(currency, kind string) string { return "platform:" + currency + ":" + kind }

// Errors of the book (the server maps them to typed API errors).
var (
	ErrMerchantID       = errors.New("merchant id must be 1-64 letters, digits, '_' or '-'")
	ErrPaymentID        = errors.New("payment id must be 1-64 letters, digits, '_' or '-'")
	ErrAmount           = errors.New("amount must be a positive integer in minor units")
	ErrCurrency         = errors.New("unknown currency")
	ErrNotAuthorized    = errors.New("the payment has no authorization in the ledger")
	ErrAlreadyCaptured  = errors.New("the payment was already captured or canceled")
	ErrNotCaptured      = errors.New("the payment has no capture in the ledger")
	ErrRefundExceeds    = errors.New("refunds would exceed the captured amount")
	ErrPayoutNotFound   = errors.New("no such payout")
	ErrPayoutClosed     = errors.New("the payout was already marked paid or failed")
	ErrCurrencyMismatch = errors.New("the currency differs from the payment's")
)

// Book posts payment accounting to a journal.
type Book struct {
	st  store.Store
	cfg *Config
	now func() time.Time
	// opened remembers (merchant, currency) pairs whose accounts exist:
	// accounts are never deleted, so each pair is opened once per process.
	opened sync.Map
	// holds remembers the authorizations this book posted, so that their
	// capture does not read them back (see holdCache).
	holds holdCache
}

// holdCacheSize bounds the authorizations remembered (a few MB at most).
const holdCacheSize = 8192

// holdCache remembers the metadata of authorization holds this process
// posted: journal transactions are immutable, so what was posted is what
// a read would return. Bounded; the oldest entry goes first, and a capture
// of a hold it does not know (posted by another replica, or before a
// restart) reads the hold from the store.
type holdCache struct {
	mu    sync.Mutex
	m     map[string]map[string]string
	order []string // a ring of the ids put, oldest at next
	next  int
}

func (c *holdCache) put(id string, meta map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.order = map[string]map[string]string{}, make([]string, holdCacheSize)
	}
	if old := c.order[c.next]; old != "" {
		delete(c.m, old)
	}
	c.order[c.next], c.next = id, (c.next+1)%holdCacheSize
	c.m[id] = meta
}

func (c *holdCache) get(id string) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.m[id]
	return m, ok
}

// forget drops a hold that was captured (its ring slot stays, harmless).
func (c *holdCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// New returns a book over st. cfg may be nil (defaults).
func New(st store.Store, cfg *Config) *Book {
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.fill()
	return &Book{st: st, cfg: cfg, now: time.Now}
}

// SetClock replaces the clock (tests).
func (b *Book) SetClock(now func() time.Time) { b.now = now }

// Config is the book's settings.
func (b *Book) Config() *Config { return b.cfg }

// Store is the underlying journal.
func (b *Book) Store() store.Store { return b.st }

// ValidID reports whether s is a valid merchant, payment or acquirer id:
// 1-64 letters, digits, '_' or '-'.
func ValidID(s string) bool { return validID(s) }

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// OpenAccounts creates the merchant's and the platform's accounts in a
// currency (idempotent).
func (b *Book) OpenAccounts(ctx context.Context, merchant, currency string) error {
	if !validID(merchant) {
		return ErrMerchantID
	}
	if !money.Valid(currency) {
		return ErrCurrency
	}
	key := merchant + "\x00" + currency
	if _, ok := b.opened.Load(key); ok {
		return nil
	}
	for _, k := range MerchantKinds {
		flags := 0
		if k == Available || k == Reserve || k == InTransit {
			flags = journal.FlagNoNegativeAvailable
		}
		if _, err := b.st.CreateAccount(ctx, journal.Account{ID: MerchantAccount(merchant, currency, k), Currency: currency, Flags: flags, Name: merchant + " " + k}); err != nil {
			return err
		}
	}
	for _, k := range PlatformKinds {
		if _, err := b.st.CreateAccount(ctx, journal.Account{ID: PlatformAccount(currency, k), Currency: currency, Name: "platform " + k}); err != nil {
			return err
		}
	}
	b.opened.Store(key, true)
	return nil
}

// Payment is a state change the gateway records.
type Payment struct {
	PaymentID         string
	MerchantID        string
	Currency          string
	Amount            int64
	Acquirer          string
	AcquirerReference string
	// RefundID names a refund (each refund of a payment has its own).
	RefundID string
}

func (p *Payment) validate(needAmount bool) error {
	switch {
	case !validID(p.PaymentID):
		return ErrPaymentID
	case !validID(p.MerchantID):
		return ErrMerchantID
	case !money.Valid(p.Currency):
		return ErrCurrency
	case needAmount && p.Amount <= 0:
		return ErrAmount
	}
	return nil
}

func (p *Payment) meta(kind string) map[string]string {
	m := map[string]string{"type": kind, "payment_id": p.PaymentID, "merchant_id": p.MerchantID}
	if p.Acquirer != "" {
		m["acquirer"] = p.Acquirer
	}
	if p.AcquirerReference != "" {
		m["acquirer_reference"] = p.AcquirerReference
	}
	return m
}

// Journal ids of a payment's transactions.
func authID(pay string) string           { return "pay:" + pay + ":authorize" }
func captureID(pay string) string        { return "pay:" + pay + ":capture" }
func cancelID(pay string) string         { return "pay:" + pay + ":cancel" }
func refundID(pay, refund string) string { return "pay:" + pay + ":refund:" + refund }

// Authorize holds the authorized amount: a pending transfer from the
// acquirer receivable to the merchant's pending balance, expiring after the
// configured authorization window.
func (b *Book) Authorize(ctx context.Context, p Payment) (store.Result, error) {
	if err := p.validate(true); err != nil {
		return store.Result{}, err
	}
	if err := b.OpenAccounts(ctx, p.MerchantID, p.Currency); err != nil {
		return store.Result{}, err
	}
	t := journal.Transaction{
		ID: authID(p.PaymentID), Kind: journal.KindPending,
		Postings: []journal.Posting{
			{AccountID: PlatformAccount(p.Currency, Receivable), Amount: -p.Amount, Currency: p.Currency},
			{AccountID: MerchantAccount(p.MerchantID, p.Currency, Pending), Amount: p.Amount, Currency: p.Currency},
		},
		Description: "authorization", Metadata: p.meta("authorization"),
	}
	r, err := b.postHold(ctx, t)
	if err == nil && !r.Replayed {
		// Posted now, so stored as t is (a replay's result may not carry
		// the metadata: its capture reads the hold).
		b.holds.put(t.ID, maps.Clone(t.Metadata))
	}
	return r, err
}

func (b *Book) postHold(ctx context.Context, t journal.Transaction) (store.Result, error) {
	if b.cfg.AuthorizationHold == 0 {
		return b.st.Post(ctx, t)
	}
	// A day boundary keeps retries identical (the id's content includes
	// it); a retry on a later day takes the first attempt's expiry.
	t.ExpiresAt = b.now().UTC().Truncate(24 * time.Hour).Add(b.cfg.AuthorizationHold)
	r, err := b.st.Post(ctx, t)
	if !errors.Is(err, journal.ErrIdempotencyReused) {
		return r, err
	}
	prev, perr := b.st.Transaction(ctx, t.ID)
	if perr != nil || prev.ExpiresAt.Equal(t.ExpiresAt) {
		return r, err
	}
	t.ExpiresAt = prev.ExpiresAt
	return b.st.Post(ctx, t)
}

// authMetadata is the metadata of a payment's authorization hold: from
// the holds this book posted, else read from the store.
func (b *Book) authMetadata(ctx context.Context, paymentID string) (map[string]string, error) {
	if m, ok := b.holds.get(authID(paymentID)); ok {
		return m, nil
	}
	auth, err := b.st.Transaction(ctx, authID(paymentID))
	if err != nil {
		return nil, err
	}
	return auth.Metadata, nil
}

// Capture posts (part of) the authorization: the captured amount moves from
// the acquirer receivable to the merchant's pending balance, and the
// merchant's fee moves from there to fee revenue, in one transaction.
func (b *Book) Capture(ctx context.Context, p Payment) (store.Result, int64, error) {
	if err := p.validate(true); err != nil {
		return store.Result{}, 0, err
	}
	authMeta, err := b.authMetadata(ctx, p.PaymentID)
	if errors.Is(err, store.ErrNoTransaction) {
		return store.Result{}, 0, ErrNotAuthorized
	} else if err != nil {
		return store.Result{}, 0, err
	}
	if authMeta["merchant_id"] != p.MerchantID {
		return store.Result{}, 0, ErrNotAuthorized
	}
	fee, err := b.cfg.Merchant(p.MerchantID).Fee(p.Currency).Of(p.Amount)
	if err != nil {
		return store.Result{}, 0, err
	}
	if p.AcquirerReference == "" {
		p.AcquirerReference = authMeta["acquirer_reference"]
	}
	if p.Acquirer == "" {
		p.Acquirer = authMeta["acquirer"]
	}
	legs := []journal.Posting{{Amount: p.Amount}}
	if fee > 0 {
		legs = append(legs,
			journal.Posting{AccountID: MerchantAccount(p.MerchantID, p.Currency, Pending), Amount: -fee, Currency: p.Currency},
			journal.Posting{AccountID: PlatformAccount(p.Currency, FeeRevenue), Amount: fee, Currency: p.Currency})
	}
	m := p.meta("capture")
	m["amount"], m["fee"] = fmt.Sprint(p.Amount), fmt.Sprint(fee)
	r, err := b.st.Post(ctx, journal.Transaction{ID: captureID(p.PaymentID), Kind: journal.KindPostPending, PendingID: authID(p.PaymentID), Postings: legs, Description: "capture", Metadata: m})
	if errors.Is(err, journal.ErrPendingClosed) {
		return r, 0, ErrAlreadyCaptured
	}
	if err == nil {
		b.holds.forget(authID(p.PaymentID))
	}
	return r, fee, err
}

// Cancel voids the authorization's hold.
func (b *Book) Cancel(ctx context.Context, p Payment) (store.Result, error) {
	if err := p.validate(false); err != nil {
		return store.Result{}, err
	}
	r, err := b.st.Post(ctx, journal.Transaction{ID: cancelID(p.PaymentID), Kind: journal.KindVoidPending, PendingID: authID(p.PaymentID), Description: "authorization canceled", Metadata: p.meta("cancel")})
	switch {
	case errors.Is(err, journal.ErrPendingNotFound):
		return r, ErrNotAuthorized
	case errors.Is(err, journal.ErrPendingClosed):
		return r, ErrAlreadyCaptured
	}
	return r, err
}

// PaymentTotals sums what the journal holds for a payment.
type PaymentTotals struct {
	Captured, Refunded, Fee int64
	Currency, MerchantID    string
}

// Totals reads a payment's captured and refunded amounts from the journal.
func (b *Book) Totals(ctx context.Context, paymentID string) (PaymentTotals, error) {
	var tot PaymentTotals
	txs, err := b.st.FindTransactions(ctx, "payment_id", paymentID, 1000)
	if err != nil {
		return tot, err
	}
	for _, t := range txs {
		tot.MerchantID = t.Metadata["merchant_id"]
		switch t.Metadata["type"] {
		case "capture":
			tot.Currency = t.Postings[0].Currency
			tot.Captured += -t.Postings[0].Amount
			if len(t.Postings) > 2 {
				tot.Fee += t.Postings[3].Amount
			}
		case "refund":
			tot.Refunded += t.Postings[1].Amount
		}
	}
	return tot, nil
}

// Refund reverses (part of) a capture: the merchant's pending balance owes
// the refund, which the acquirer pays out and settlement clears. The
// platform's fee is not returned. Refunds never exceed the capture.
func (b *Book) Refund(ctx context.Context, p Payment) (store.Result, error) {
	if err := p.validate(true); err != nil {
		return store.Result{}, err
	}
	if !validID(p.RefundID) {
		return store.Result{}, fmt.Errorf("%w (refund id)", ErrPaymentID)
	}
	id := refundID(p.PaymentID, p.RefundID)
	t := journal.Transaction{ID: id, Postings: []journal.Posting{
		{AccountID: MerchantAccount(p.MerchantID, p.Currency, Pending), Amount: -p.Amount, Currency: p.Currency},
		{AccountID: PlatformAccount(p.Currency, Refunds), Amount: p.Amount, Currency: p.Currency},
	}, Description: "refund", Metadata: p.meta("refund")}
	t.Metadata["refund_id"] = p.RefundID
	if _, err := b.st.Transaction(ctx, id); err == nil {
		return b.st.Post(ctx, t) // a retry: replays (or conflicts)
	}
	tot, err := b.Totals(ctx, p.PaymentID)
	if err != nil {
		return store.Result{}, err
	}
	switch {
	case tot.Captured == 0 || tot.MerchantID != p.MerchantID:
		return store.Result{}, ErrNotCaptured
	case tot.Currency != p.Currency:
		return store.Result{}, ErrCurrencyMismatch
	case p.Amount > tot.Captured-tot.Refunded:
		return store.Result{}, ErrRefundExceeds
	}
	// Concurrent refunds of one payment are serialized by the gateway (one
	// payment row lock); the check above is the ledger's own guard.
	return b.st.Post(ctx, t)
}

// Balances are a merchant's balances in one currency.
type Balances struct {
	MerchantID, Currency                   string
	Pending, Available, Reserve, InTransit int64
	// Held is what open authorizations hold (not yet captured).
	Held int64
}

// Balances reads a merchant's balances.
func (b *Book) Balances(ctx context.Context, merchant, currency string) (Balances, error) {
	out := Balances{MerchantID: merchant, Currency: currency}
	if !validID(merchant) {
		return out, ErrMerchantID
	}
	if !money.Valid(currency) {
		return out, ErrCurrency
	}
	for _, k := range MerchantKinds {
		a, err := b.st.Account(ctx, MerchantAccount(merchant, currency, k))
		if errors.Is(err, journal.ErrUnknownAccount) {
			continue
		} else if err != nil {
			return out, err
		}
		switch k {
		case Pending:
			out.Pending, out.Held = a.Balance.Posted, a.Balance.PendingCredits
		case Available:
			out.Available = a.Balance.Posted
		case Reserve:
			out.Reserve = a.Balance.Posted
		case InTransit:
			out.InTransit = a.Balance.Posted
		}
	}
	return out, nil
}

// merchants lists the (merchant, currency) pairs with accounts.
func (b *Book) merchants(ctx context.Context) ([][2]string, error) {
	var out [][2]string
	after := ""
	for {
		accts, err := b.st.Accounts(ctx, "merchant:", after, 1000)
		if err != nil {
			return nil, err
		}
		if len(accts) == 0 {
			return out, nil
		}
		for _, a := range accts {
			parts := strings.Split(a.ID, ":")
			if len(parts) == 4 && parts[3] == Pending {
				out = append(out, [2]string{parts[1], parts[2]})
			}
		}
		after = accts[len(accts)-1].ID
	}
}
