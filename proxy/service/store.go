package service

import (
	"context"
	"errors"
	"time"
)

// Store keeps payments, their capture/cancel/refund operations,
// idempotency leases and the ledger outbox. Its implementations live in
// proxy/store (PostgreSQL and SQLite, one conformance suite:
// proxy/store/storetest). Every write that changes a payment checks its version
// (ErrConcurrentUpdate when it changed since it was read); any error but
// the ones declared here means the database is unavailable.
type Store interface {
	// Insert stores a new payment.
	Insert(ctx context.Context, p *Payment) error
	// InsertCommit stores a new payment that is already final (declined
	// by risk) with its outbox events, in one transaction.
	InsertCommit(ctx context.Context, p *Payment, events []OutboxEntry, now time.Time) error
	// Get reads a merchant's payment (ErrNotFound).
	Get(ctx context.Context, merchant, id string) (*Payment, error)
	// List lists a merchant's payments, newest first.
	List(ctx context.Context, merchant string, f ListFilter) ([]*Payment, error)
	// Update writes p if nobody changed it since it was read (version
	// check), and bumps its version.
	Update(ctx context.Context, p *Payment) error
	// Commit writes p (version check) and queues its ledger events in the
	// outbox, in one transaction: a state change and the ledger events it
	// owes are durable together. p.Fee is written only when it is not zero:
	// the sweeper stores a delivered capture's fee without moving the
	// version, and a zero read before that must not overwrite it.
	Commit(ctx context.Context, p *Payment, events []OutboxEntry, now time.Time) error
	// DeleteProcessing removes a payment still processing whose acquirer
	// was never called.
	DeleteProcessing(ctx context.Context, merchant, id string) error
	// Processing lists payments processing since before `before`.
	Processing(ctx context.Context, before time.Time, limit int) ([]*Payment, error)
	// Compensating lists final payments that still owe an undo step (a
	// reversal, a hold release), last changed before `before`.
	Compensating(ctx context.Context, before time.Time, limit int) ([]*Payment, error)
	// ClearCompensation records that the compensation steps `was` are
	// done, leaving `left` (compare-and-set on the steps).
	ClearCompensation(ctx context.Context, p *Payment, was, left string) error
	// SetFee records the fee the ledger took at capture (no version bump).
	SetFee(ctx context.Context, paymentID string, fee int64) error

	// BeginIdempotent claims (merchant, key) for a request with hash, for
	// owner, until now+lease. It returns the stored response of a finished
	// first request, or "" and the claim when the caller owns the key and
	// must Finish or Release it. An unfinished claim whose lease expired
	// is taken over by compare-and-set on its lease version, so two
	// processes never both own a key (ErrIdemReused, ErrIdemInProgress).
	BeginIdempotent(ctx context.Context, merchant, key, hash, owner string, now time.Time, lease time.Duration) (string, Claim, error)
	// RenewIdempotent extends a held lease to now+lease (ErrLeaseLost
	// when it was taken over).
	RenewIdempotent(ctx context.Context, c Claim, now time.Time, lease time.Duration) error
	// FinishIdempotent stores the final response for retries, if the
	// claim is still held (ErrLeaseLost otherwise).
	FinishIdempotent(ctx context.Context, c Claim, response string) error
	// ReleaseIdempotent forgets a held claim whose request failed
	// retryably, so that a retry runs again.
	ReleaseIdempotent(ctx context.Context, c Claim) error

	// Operation reads an operation (ErrNoOperation).
	Operation(ctx context.Context, id string) (*Operation, error)
	// StartOperation stores op as processing and marks it in flight on p
	// (one operation at a time per payment), in one transaction with p's
	// version check.
	StartOperation(ctx context.Context, p *Payment, op *Operation) error
	// StartOperationFor reads a merchant's payment, asks plan for the
	// operation to start on it and stores that operation as StartOperation
	// does, in one transaction with the read (ErrNotFound; plan's error,
	// nothing written; ErrConcurrentUpdate). plan may run more than once.
	StartOperationFor(ctx context.Context, merchant, id string, plan func(p *Payment) (*Operation, error)) (*Payment, *Operation, error)
	// TouchOperation claims a processing operation for a resumption by
	// moving its updated_at from op.UpdatedAt to now (compare-and-set: of
	// two resumers, one wins; ErrConcurrentUpdate for the other).
	TouchOperation(ctx context.Context, op *Operation, now time.Time) error
	// FinishOperation ends a processing operation (state and error code
	// set on op), writes p (version check) and queues the ledger events,
	// in one transaction. Like Commit, it writes p.Fee only when it is not
	// zero (a fee is set once, by the write that learned it).
	FinishOperation(ctx context.Context, p *Payment, op *Operation, events []OutboxEntry, now time.Time) error
	// StaleOperations lists operations processing since before `before`.
	StaleOperations(ctx context.Context, before time.Time, limit int) ([]*Operation, error)

	// Outbox lists the pending ledger events due at now, the most overdue
	// first (dead entries and entries backing off are skipped).
	Outbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error)
	// OlderOutbox returns the oldest undelivered event (pending or dead)
	// queued for the same payment before the entry id, if any (nil).
	OlderOutbox(ctx context.Context, paymentID, id string) (*OutboxEntry, error)
	// OutboxDone removes a delivered event.
	OutboxDone(ctx context.Context, id string) error
	// OutboxDoneFee records the fee the ledger took at capture (as
	// SetFee) and removes the delivered capture event, in one transaction.
	OutboxDoneFee(ctx context.Context, id, paymentID string, fee int64) error
	// OutboxAttempt counts a failed delivery and sets when to try again.
	OutboxAttempt(ctx context.Context, id, code string, next time.Time) error
	// OutboxDefer moves a pending entry's next attempt to at without
	// counting an attempt.
	OutboxDefer(ctx context.Context, id string, at time.Time) error
	// OutboxDeadLetter marks an event the ledger refused for good.
	OutboxDeadLetter(ctx context.Context, id, code string) error

	// The merchant events outbox (entries with OutboxEntry.Merchant, for
	// eventsd): EventsDue lists the pending ones due at now in the order
	// they were written; EventsDelivered marks them delivered; EventFailed
	// records a failed delivery (dead, or pending until next); Events
	// lists them in a state ("" for all).
	EventsDue(ctx context.Context, now time.Time, limit int) ([]EventEntry, error)
	EventsDelivered(ctx context.Context, ids []string) error
	EventFailed(ctx context.Context, id string, next time.Time, lastError string, dead bool) error
	Events(ctx context.Context, state string, limit int) ([]EventEntry, error)
}

// Store errors.
var (
	ErrNotFound         = errors.New("no such payment")
	ErrConcurrentUpdate = errors.New("the payment changed concurrently")
	ErrIdemReused       = errors.New("idempotency key reused with another request")
	ErrIdemInProgress   = errors.New("a request with this idempotency key is in progress")
)

// ErrLeaseLost: the idempotency lease was taken over by another process.
var ErrLeaseLost = errors.New("the idempotency lease was taken over")

// ErrNoOperation: no such operation.
var ErrNoOperation = errors.New("no such operation")

// ListFilter selects payments.
type ListFilter struct {
	Status        string
	After, Before time.Time
	// Cursor: payments older than (CursorAt, CursorID).
	CursorAt int64
	CursorID string
	Limit    int
}

// Claim is a held idempotency lease: Version changes on every takeover, so
// a holder whose lease was taken over can no longer renew, finish or
// release it.
type Claim struct {
	Merchant, Key, Owner string
	Version              int64
}

// Outbox states.
const (
	OutboxPending = "pending"
	// OutboxDead: the ledger refused the event for good; it waits for an
	// operator (obol gateway outbox list|retry).
	OutboxDead = "dead"
)

// OutboxEntry is a ledger event waiting for delivery.
type OutboxEntry struct {
	// Merchant, when set, makes this a merchant event (for eventsd, in
	// the event_outbox table) instead of a ledger event.
	Merchant               *MerchantEvent
	ID, PaymentID, Request string
	Attempts               int64
	State, LastError       string
	NextAttemptAt          time.Time
	CreatedAt              time.Time
	// First is set by the store on a ledger event it has just queued
	// (Commit, InsertCommit, FinishOperation) when no older undelivered
	// ledger event of the payment existed in that transaction: the
	// delivery right after the commit then skips OlderOutbox (a later
	// event of the payment can only be queued after it).
	First bool
}

// Operation kinds and states.
const (
	OpCapture = "capture"
	OpCancel  = "cancel"
	OpRefund  = "refund"

	OpProcessing = "processing"
	OpSucceeded  = "succeeded"
	OpFailed     = "failed"
)

// Operation is a capture, cancel or refund of a payment, stored before the
// acquirer is called.
type Operation struct {
	ID, PaymentID, MerchantID, Kind string
	Amount                          int64
	Reason, State, ErrorCode        string
	// RequestHash identifies the request that started it (a retry with
	// the same Idempotency-Key and another body is refused).
	RequestHash          string
	CreatedAt, UpdatedAt time.Time
}
