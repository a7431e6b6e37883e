package store

import (
	"context"
	"errors"
	"time"

	"github.com/obolpay/obol/ledger/journal"
)

// Dispute statuses. A dispute opens needs_response, may go under_review,
// and closes won or lost; it never goes back.
const (
	DisputeNeedsResponse = "needs_response"
	DisputeUnderReview   = "under_review"
	DisputeWon           = "won"
	DisputeLost          = "lost"
)

// DisputeRank orders the statuses (0 for an unknown one): a transition
// goes to a higher rank only; won and lost share the last.
func DisputeRank(status string) int {
	switch status {
	case DisputeNeedsResponse:
		return 1
	case DisputeUnderReview:
		return 2
	case DisputeWon, DisputeLost:
		return 3
	}
	return 0
}

// Dispute is a chargeback's lifecycle, as the ledger keeps it. It holds no
// card data.
type Dispute struct {
	ID                string // dp_…, derived from the chargeback line
	PaymentID         string
	MerchantID        string
	Acquirer          string
	AcquirerReference string
	Amount            int64 // disputed, minor units (positive)
	Fee               int64 // the acquirer's dispute fee, borne by the merchant unless won
	Currency          string
	Reason            string
	Status            string
	// Version counts the dispute's states: 1 when created, +1 per change.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Event is a PAN-free event written to the ledger's outbox in the same
// database transaction as the state change it reports (see the events
// design: the relay delivers it to eventsd, idempotent by ID).
type Event struct {
	ID            string // evt_…, derived from the object and its version
	Type          string
	MerchantID    string
	ObjectType    string
	ObjectID      string
	ObjectVersion int64
	Data          []byte // the object's new state, JSON
	CreatedAt     time.Time
}

// DisputeFilter selects disputes: every set field must match. Disputes
// come newest first (created_at, then id, descending), after the dispute
// whose id is After (at most Limit, default 100, at most 1000).
type DisputeFilter struct {
	MerchantID string
	PaymentID  string
	After      string
	Limit      int
}

// Dispute errors.
var (
	// ErrNoDispute is returned for an unknown dispute id.
	ErrNoDispute = errors.New("no such dispute")
	// ErrDisputeVersion: the dispute changed since it was read (the
	// compare-and-set of UpdateDispute failed).
	ErrDisputeVersion = errors.New("the dispute changed since it was read")
)

// Disputes is the disputes part of the ledger store.
type Disputes interface {
	// CreateDispute stores d as version 1 with its events, atomically. If
	// a dispute with d.ID exists it writes nothing and returns the stored
	// one with created false (a replay).
	CreateDispute(ctx context.Context, d Dispute, events ...Event) (stored Dispute, created bool, err error)
	// UpdateDispute replaces the dispute d.ID whose stored version is
	// d.Version-1 with d, with its events, atomically; otherwise
	// ErrDisputeVersion (or ErrNoDispute).
	UpdateDispute(ctx context.Context, d Dispute, events ...Event) (Dispute, error)
	// Dispute reads a dispute by id, or ErrNoDispute.
	Dispute(ctx context.Context, id string) (Dispute, error)
	// ListDisputes lists disputes by filter.
	ListDisputes(ctx context.Context, f DisputeFilter) ([]Dispute, error)
}

// Validate checks the fields a store relies on.
func (d Dispute) Validate() error {
	switch {
	case d.ID == "" || d.PaymentID == "" || d.MerchantID == "":
		return errors.New("dispute: id, payment and merchant are required")
	case d.Amount <= 0 || d.Fee < 0:
		return errors.New("dispute: amount must be positive, fee not negative")
	case DisputeRank(d.Status) == 0:
		return errors.New("dispute: unknown status " + d.Status)
	}
	return nil
}

// Bounded is the filter's limit, defaulted and capped.
func (f DisputeFilter) Bounded() int {
	if f.Limit <= 0 || f.Limit > 1000 {
		return 100
	}
	return f.Limit
}

// Outbox entry states.
const (
	OutboxPending   = "pending"
	OutboxDelivered = "delivered"
	OutboxDead      = "dead" // refused for good by eventsd: an operator looks at it
)

// OutboxEntry is an event waiting in (or delivered from) the outbox.
type OutboxEntry struct {
	Event
	Seq           int64
	Attempts      int
	NextAttemptAt time.Time
	Status        string
	LastError     string
}

// OutboxCounts counts the outbox's entries by state.
type OutboxCounts struct{ Pending, Delivered, Dead int64 }

// Outbox is the ledger's event outbox: events are written with the state
// change that causes them (CreateDispute, UpdateDispute, PostWithEvents)
// and a relay delivers them to eventsd.
type Outbox interface {
	// PostWithEvents posts t and, in the same database transaction, adds
	// events to the outbox (an event id already there is kept). A replayed
	// transaction adds nothing.
	PostWithEvents(ctx context.Context, t journal.Transaction, events ...Event) (Result, error)
	// AddEvents adds events that report on several transactions (a
	// settlement import) to the outbox, an id already there kept.
	AddEvents(ctx context.Context, events ...Event) error
	// DueEvents lists pending entries whose next attempt is due at now, in
	// outbox order (at most limit).
	DueEvents(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error)
	// MarkDelivered marks entries delivered.
	MarkDelivered(ctx context.Context, ids []string) error
	// MarkFailed records a failed attempt of an entry: dead, or pending
	// with its next attempt at next.
	MarkFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error
	// OutboxEvents lists every entry in outbox order after seq (at most
	// limit), whatever its state.
	OutboxEvents(ctx context.Context, afterSeq int64, limit int) ([]OutboxEntry, error)
	// CountOutbox counts entries by state.
	CountOutbox(ctx context.Context) (OutboxCounts, error)
}
