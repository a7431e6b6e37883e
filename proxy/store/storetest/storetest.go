// Package storetest is the conformance suite every backend of the gateway's
// payment store runs (PostgreSQL and SQLite), so the two never drift.
// PAN-free: payments hold a token and card metadata only.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/proxy/service"
)

// Store is what the suite checks: the payment service's store, plus the
// operator's outbox verbs and the reconciliation's reads.
type Store interface {
	service.Store
	AddOutbox(ctx context.Context, id, paymentID, request string, now time.Time) error
	OutboxList(ctx context.Context, state string, limit int) ([]service.OutboxEntry, error)
	OutboxRetry(ctx context.Context, id string, now time.Time) (int64, error)
	PaymentsAfter(ctx context.Context, after string, limit int) ([]*service.Payment, error)
	OutboxAfter(ctx context.Context, after string, limit int) ([]service.OutboxEntry, error)
	Close() error
}

// Run runs the suite; newStore returns an empty, migrated store per call
// (the suite closes it).
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"payment round trip", testPaymentRoundTrip},
		{"update is a version check", testUpdateVersion},
		{"list filters and pages newest first", testList},
		{"sweeper queries", testSweeperQueries},
		{"idempotency lease", testIdempotencyLease},
		{"idempotency takeover race has one winner", testIdempotencyTakeoverRace},
		{"operations", testOperations},
		{"an operation starts on the payment it reads", testStartOperationFor},
		{"outbox backoff and dead letters", testOutbox},
		{"outbox keeps each payment's order", testOutboxOrder},
		{"concurrent deliveries are recorded, grouped", testDeliveredConcurrently},
		{"a delivery after Close is refused", testDeliveredAfterClose},
		{"commit writes the payment and its events together", testCommit},
		{"a write stores the fee it carries and keeps the one stored", testFeeWrites},
		{"merchant events outbox", testMerchantEvents},
		{"reconciliation reads", testReconcileReads},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

// t0 has microseconds (what the store keeps) and no finer part.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 123456000, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func payment(id, merchant string, at time.Time) *service.Payment {
	return &service.Payment{ID: id, MerchantID: merchant, Status: service.StatusCaptured, Amount: 1000, AmountCaptured: 1000, Currency: "USD",
		Token: "tok_" + id, Acquirer: "simulator", CreatedAt: at, UpdatedAt: at, Version: 1}
}

func mustInsert(t *testing.T, s Store, p *service.Payment) *service.Payment {
	t.Helper()
	require.NoError(t, s.Insert(ctx(t), p), "insert %s", p.ID)
	return p
}

func entry(id, paymentID string) service.OutboxEntry {
	return service.OutboxEntry{ID: id, PaymentID: paymentID, Request: `{"paymentId":"` + paymentID + `"}`}
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, id(x))
	}
	return out
}

func paymentIDs(ps []*service.Payment) []string {
	return ids(ps, func(p *service.Payment) string { return p.ID })
}

func entryIDs(es []service.OutboxEntry) []string {
	return ids(es, func(e service.OutboxEntry) string { return e.ID })
}

func testPaymentRoundTrip(t *testing.T, s Store) {
	c := ctx(t)
	p := payment("pay_1", "mer_1", t0)
	p.Card = service.Card{Brand: "visa", Last4: "4242", Fingerprint: "fp_1"}
	p.Risk = service.Risk{Action: service.RiskReview, Score: 42, Rules: []string{"r1"}, RuleSetVersion: "v3"}
	p.Metadata = map[string]string{"order": "42"}
	p.Refunds = []service.Refund{{ID: "re_1", Amount: 100, Reason: "requested_by_customer", CreatedAt: t0}}
	p.AmountRefunded, p.Description, p.AcquirerReference, p.DeclineCode = 100, "books", "sim_1", ""
	mustInsert(t, s, p)
	assert.Error(t, s.Insert(c, payment("pay_1", "mer_1", t0)), "a duplicate id")

	got, err := s.Get(c, "mer_1", "pay_1")
	require.NoError(t, err)
	assert.Equal(t, p, got)
	_, err = s.Get(c, "mer_2", "pay_1")
	assert.ErrorIs(t, err, service.ErrNotFound, "another merchant's payment")
	_, err = s.Get(c, "mer_1", "pay_none")
	assert.ErrorIs(t, err, service.ErrNotFound)

	bare := mustInsert(t, s, payment("pay_bare", "mer_1", t0))
	got, err = s.Get(c, "mer_1", bare.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Metadata)
	assert.Empty(t, got.Refunds)

	require.NoError(t, s.SetFee(c, "pay_1", 59))
	got, err = s.Get(c, "mer_1", "pay_1")
	require.NoError(t, err)
	assert.EqualValues(t, 59, got.Fee)
	assert.EqualValues(t, 1, got.Version, "the fee does not bump the version")
}

func testUpdateVersion(t *testing.T, s Store) {
	c := ctx(t)
	p := mustInsert(t, s, payment("pay_1", "mer_1", t0))
	stale := *p
	p.Status, p.AmountRefunded, p.UpdatedAt = service.StatusPartiallyRefunded, 300, t0.Add(time.Second)
	require.NoError(t, s.Update(c, p))
	assert.EqualValues(t, 2, p.Version)
	stale.Status = service.StatusCanceled
	assert.ErrorIs(t, s.Update(c, &stale), service.ErrConcurrentUpdate, "a write from a stale read")
	other := *p
	other.MerchantID = "mer_2"
	assert.ErrorIs(t, s.Update(c, &other), service.ErrConcurrentUpdate, "another merchant's payment")
	got, err := s.Get(c, "mer_1", "pay_1")
	require.NoError(t, err)
	assert.Equal(t, service.StatusPartiallyRefunded, got.Status)
	assert.EqualValues(t, 300, got.AmountRefunded)
	assert.Equal(t, t0.Add(time.Second), got.UpdatedAt)

	bad := *got
	bad.AmountRefunded = 2000
	assert.Error(t, s.Update(c, &bad), "the schema refuses a refund above the captured amount")
}

func testList(t *testing.T, s Store) {
	c := ctx(t)
	for i := range 5 {
		p := payment(fmt.Sprintf("pay_%d", i), "mer_1", t0.Add(time.Duration(i)*time.Minute))
		if i%2 == 1 {
			p.Status = service.StatusAuthorized
		}
		mustInsert(t, s, p)
	}
	mustInsert(t, s, payment("pay_tie", "mer_1", t0.Add(4*time.Minute))) // same time as pay_4
	mustInsert(t, s, payment("pay_other", "mer_2", t0))

	tests := []struct {
		name string
		f    service.ListFilter
		want []string
	}{
		{"all, newest first, ties by id", service.ListFilter{Limit: 10}, []string{"pay_tie", "pay_4", "pay_3", "pay_2", "pay_1", "pay_0"}},
		{"limit", service.ListFilter{Limit: 2}, []string{"pay_tie", "pay_4"}},
		{"status", service.ListFilter{Status: service.StatusAuthorized, Limit: 10}, []string{"pay_3", "pay_1"}},
		{"after and before", service.ListFilter{After: t0, Before: t0.Add(3 * time.Minute), Limit: 10}, []string{"pay_2", "pay_1"}},
		{"cursor inside a tie", service.ListFilter{CursorAt: t0.Add(4 * time.Minute).UnixMicro(), CursorID: "pay_tie", Limit: 2}, []string{"pay_4", "pay_3"}},
		{"cursor and status", service.ListFilter{Status: service.StatusCaptured, CursorAt: t0.Add(4 * time.Minute).UnixMicro(), CursorID: "pay_4", Limit: 10}, []string{"pay_2", "pay_0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(c, "mer_1", tt.f)
			require.NoError(t, err)
			assert.Equal(t, tt.want, paymentIDs(got))
		})
	}
}

func testSweeperQueries(t *testing.T, s Store) {
	c := ctx(t)
	old := payment("pay_old", "mer_1", t0)
	old.Status = service.StatusProcessing
	mustInsert(t, s, old)
	fresh := payment("pay_fresh", "mer_1", t0.Add(time.Hour))
	fresh.Status = service.StatusProcessing
	mustInsert(t, s, fresh)
	owes := payment("pay_owes", "mer_1", t0)
	owes.Status, owes.Compensation = service.StatusFailed, service.CompReverse+","+service.CompRelease
	mustInsert(t, s, owes)
	mustInsert(t, s, payment("pay_done", "mer_1", t0))

	got, err := s.Processing(c, t0.Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"pay_old"}, paymentIDs(got), "processing since before the cutoff")
	got, err = s.Compensating(c, t0.Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"pay_owes"}, paymentIDs(got))

	require.NoError(t, s.ClearCompensation(c, owes, "wrong", ""), "a compare-and-set that misses is no error")
	require.NoError(t, s.ClearCompensation(c, owes, owes.Compensation, service.CompRelease))
	p, err := s.Get(c, "mer_1", "pay_owes")
	require.NoError(t, err)
	assert.Equal(t, service.CompRelease, p.Compensation)
	require.NoError(t, s.ClearCompensation(c, owes, service.CompRelease, ""))
	got, err = s.Compensating(c, t0.Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Empty(t, got)

	require.NoError(t, s.DeleteProcessing(c, "mer_2", "pay_old"), "another merchant's: no-op")
	require.NoError(t, s.DeleteProcessing(c, "mer_1", "pay_done"), "not processing: no-op")
	require.NoError(t, s.DeleteProcessing(c, "mer_1", "pay_old"))
	_, err = s.Get(c, "mer_1", "pay_old")
	assert.ErrorIs(t, err, service.ErrNotFound)
	_, err = s.Get(c, "mer_1", "pay_done")
	assert.NoError(t, err)
}

func testIdempotencyLease(t *testing.T, s Store) {
	c := ctx(t)
	const lease = 10 * time.Second
	resp, a, err := s.BeginIdempotent(c, "mer_1", "k", "h1", "gw_a", t0, lease)
	require.NoError(t, err)
	assert.Empty(t, resp)
	assert.Equal(t, service.Claim{Merchant: "mer_1", Key: "k", Owner: "gw_a", Version: 1}, a)

	_, _, err = s.BeginIdempotent(c, "mer_1", "k", "h2", "gw_b", t0, lease)
	assert.ErrorIs(t, err, service.ErrIdemReused, "another request under the key")
	_, _, err = s.BeginIdempotent(c, "mer_1", "k", "h1", "gw_b", t0.Add(5*time.Second), lease)
	assert.ErrorIs(t, err, service.ErrIdemInProgress, "a live lease")
	_, other, err := s.BeginIdempotent(c, "mer_2", "k", "h2", "gw_b", t0, lease)
	require.NoError(t, err, "keys are per merchant")

	require.NoError(t, s.RenewIdempotent(c, a, t0.Add(5*time.Second), lease))
	_, _, err = s.BeginIdempotent(c, "mer_1", "k", "h1", "gw_b", t0.Add(12*time.Second), lease)
	assert.ErrorIs(t, err, service.ErrIdemInProgress, "the renewed lease runs to t+15s")

	_, b, err := s.BeginIdempotent(c, "mer_1", "k", "h1", "gw_b", t0.Add(16*time.Second), lease)
	require.NoError(t, err, "takeover of an expired lease")
	assert.Equal(t, service.Claim{Merchant: "mer_1", Key: "k", Owner: "gw_b", Version: 2}, b)
	assert.ErrorIs(t, s.RenewIdempotent(c, a, t0.Add(16*time.Second), lease), service.ErrLeaseLost)
	assert.ErrorIs(t, s.FinishIdempotent(c, a, `{"id":"pay_a"}`), service.ErrLeaseLost)
	require.NoError(t, s.ReleaseIdempotent(c, a), "releasing a lost claim is a no-op")

	require.NoError(t, s.FinishIdempotent(c, b, `{"id":"pay_b"}`))
	assert.ErrorIs(t, s.FinishIdempotent(c, b, `{"id":"pay_b2"}`), service.ErrLeaseLost, "finished once")
	resp, _, err = s.BeginIdempotent(c, "mer_1", "k", "h1", "gw_c", t0.Add(time.Hour), lease)
	require.NoError(t, err)
	assert.Equal(t, `{"id":"pay_b"}`, resp, "a finished key replays its response, lease or not")
	require.NoError(t, s.ReleaseIdempotent(c, b), "a finished claim is never released")
	resp, _, err = s.BeginIdempotent(c, "mer_1", "k", "h1", "gw_c", t0.Add(time.Hour), lease)
	require.NoError(t, err)
	assert.Equal(t, `{"id":"pay_b"}`, resp)

	require.NoError(t, s.ReleaseIdempotent(c, other))
	resp, again, err := s.BeginIdempotent(c, "mer_2", "k", "h3", "gw_d", t0, lease)
	require.NoError(t, err, "a released key is free, for any request")
	assert.Empty(t, resp)
	assert.Equal(t, "gw_d", again.Owner)
}

func testIdempotencyTakeoverRace(t *testing.T, s Store) {
	c := ctx(t)
	const lease = 10 * time.Second
	_, dead, err := s.BeginIdempotent(c, "mer_1", "k", "h", "gw_dead", t0, lease)
	require.NoError(t, err)
	at := t0.Add(11 * time.Second)
	var wins atomic.Int32
	var winner atomic.Pointer[service.Claim]
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, cl, err := s.BeginIdempotent(c, "mer_1", "k", "h", fmt.Sprintf("gw_%d", i), at, lease)
			if err == nil {
				wins.Add(1)
				winner.Store(&cl)
				return
			}
			assert.ErrorIs(t, err, service.ErrIdemInProgress)
		}()
	}
	wg.Wait()
	require.Equal(t, int32(1), wins.Load(), "takeovers")
	assert.ErrorIs(t, s.RenewIdempotent(c, dead, at, lease), service.ErrLeaseLost)
	assert.ErrorIs(t, s.FinishIdempotent(c, dead, `{"id":"pay_dead"}`), service.ErrLeaseLost)
	require.NoError(t, s.ReleaseIdempotent(c, dead))
	w := winner.Load()
	require.NoError(t, s.RenewIdempotent(c, *w, at, lease), "the winner still holds the key")
	require.NoError(t, s.FinishIdempotent(c, *w, `{"id":"pay_w"}`))
	prev, _, err := s.BeginIdempotent(c, "mer_1", "k", "h", "gw_z", at.Add(time.Hour), lease)
	require.NoError(t, err)
	assert.Equal(t, `{"id":"pay_w"}`, prev)
}

// testOperations: an operation is stored processing with the payment
// marked in flight, one at a time; finishing it is a compare-and-set (a
// second resumer loses) that writes the payment and queues its ledger
// event in one transaction; a touch claims a stale operation for one
// resumer only.
func testOperations(t *testing.T, s Store) {
	c := ctx(t)
	p := mustInsert(t, s, payment("pay_1", "mer_1", t0))
	op := &service.Operation{ID: "re_a", PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpRefund, Amount: 300, Reason: "duplicate",
		RequestHash: "h", State: service.OpProcessing, CreatedAt: t0, UpdatedAt: t0}
	require.NoError(t, s.StartOperation(c, p, op))
	assert.Equal(t, "re_a", p.PendingOp)
	assert.EqualValues(t, 2, p.Version)
	got, err := s.Operation(c, "re_a")
	require.NoError(t, err)
	assert.Equal(t, op, got)

	stale, err := s.Get(c, p.MerchantID, p.ID)
	require.NoError(t, err)
	stale.PendingOp = ""
	other := &service.Operation{ID: "re_b", PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpRefund, Amount: 100, State: service.OpProcessing, CreatedAt: t0, UpdatedAt: t0}
	assert.ErrorIs(t, s.StartOperation(c, stale, other), service.ErrConcurrentUpdate, "a second operation while one is in flight")
	_, err = s.Operation(c, "re_b")
	assert.ErrorIs(t, err, service.ErrNoOperation, "nothing of the refused operation is stored")

	ops, err := s.StaleOperations(c, t0, 10)
	require.NoError(t, err)
	assert.Empty(t, ops, "not stale yet")
	ops, err = s.StaleOperations(c, t0.Add(time.Second), 10)
	require.NoError(t, err)
	require.Len(t, ops, 1)
	a, b := *ops[0], *ops[0]
	require.NoError(t, s.TouchOperation(c, &a, t0.Add(time.Minute)))
	assert.Equal(t, t0.Add(time.Minute), a.UpdatedAt)
	assert.ErrorIs(t, s.TouchOperation(c, &b, t0.Add(time.Minute)), service.ErrConcurrentUpdate, "two resumers claim one operation")

	cur, err := s.Get(c, p.MerchantID, p.ID)
	require.NoError(t, err)
	finish := func(p *service.Payment) error {
		o := a
		o.State = service.OpSucceeded
		p.PendingOp, p.AmountRefunded, p.Status = "", 300, service.StatusPartiallyRefunded
		p.Refunds = append(p.Refunds, service.Refund{ID: o.ID, Amount: 300, CreatedAt: t0})
		return s.FinishOperation(c, p, &o, []service.OutboxEntry{entry("ev_re_a", p.ID)}, t0.Add(2*time.Minute))
	}
	second := *cur
	require.NoError(t, finish(cur))
	assert.ErrorIs(t, finish(&second), service.ErrConcurrentUpdate, "the operation is finished once")
	done, err := s.Operation(c, "re_a")
	require.NoError(t, err)
	assert.Equal(t, service.OpSucceeded, done.State)
	assert.Equal(t, t0.Add(2*time.Minute), done.UpdatedAt)
	assert.ErrorIs(t, s.TouchOperation(c, done, t0.Add(3*time.Minute)), service.ErrConcurrentUpdate, "a finished operation is not resumed")
	got2, err := s.Get(c, p.MerchantID, p.ID)
	require.NoError(t, err)
	assert.Empty(t, got2.PendingOp)
	assert.EqualValues(t, 300, got2.AmountRefunded)
	require.Len(t, got2.Refunds, 1)
	queued, err := s.OutboxList(c, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_re_a"}, entryIDs(queued), "the ledger event is queued once")
	ops, err = s.StaleOperations(c, t0.Add(time.Hour), 10)
	require.NoError(t, err)
	assert.Empty(t, ops, "finished operations are not stale")
}

func testOutbox(t *testing.T, s Store) {
	c := ctx(t)
	require.NoError(t, s.AddOutbox(c, "ev_1", "pay_1", `{"a":1}`, t0))
	require.NoError(t, s.AddOutbox(c, "ev_1", "pay_1", `{"a":2}`, t0.Add(time.Hour)), "queuing twice is a no-op")
	require.NoError(t, s.AddOutbox(c, "ev_2", "pay_2", `{"b":1}`, t0.Add(time.Second)))
	require.NoError(t, s.AddOutbox(c, "ev_3", "pay_3", `{"c":1}`, t0.Add(2*time.Second)))

	due, err := s.Outbox(c, t0.Add(time.Second), 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_1", "ev_2"}, entryIDs(due), "due now, the most overdue first")
	assert.Equal(t, service.OutboxEntry{ID: "ev_1", PaymentID: "pay_1", Request: `{"a":1}`, State: service.OutboxPending, NextAttemptAt: t0, CreatedAt: t0}, due[0])

	require.NoError(t, s.OutboxAttempt(c, "ev_1", "unavailable", t0.Add(time.Minute)))
	due, err = s.Outbox(c, t0.Add(10*time.Second), 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_2", "ev_3"}, entryIDs(due), "an entry backing off is skipped")
	require.NoError(t, s.OutboxDefer(c, "ev_2", t0.Add(2*time.Minute)))
	require.NoError(t, s.OutboxDeadLetter(c, "ev_3", "failed_precondition"))
	due, err = s.Outbox(c, t0.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"ev_1"}, entryIDs(due), "deferred and dead entries are skipped")
	assert.EqualValues(t, 1, due[0].Attempts)
	assert.Equal(t, "unavailable", due[0].LastError)

	dead, err := s.OutboxList(c, service.OutboxDead, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"ev_3"}, entryIDs(dead))
	assert.Equal(t, "failed_precondition", dead[0].LastError)
	assert.EqualValues(t, 1, dead[0].Attempts)
	pending, err := s.OutboxList(c, service.OutboxPending, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_1", "ev_2"}, entryIDs(pending), "oldest first")
	all, err := s.OutboxList(c, "", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_1", "ev_2"}, entryIDs(all), "limit")

	n, err := s.OutboxRetry(c, "ev_none", t0.Add(time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n)
	n, err = s.OutboxRetry(c, "", t0.Add(time.Hour))
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "every dead entry")
	require.NoError(t, s.OutboxDeadLetter(c, "ev_3", "failed_precondition"))
	n, err = s.OutboxRetry(c, "ev_3", t0.Add(time.Hour))
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "the one named")
	due, err = s.Outbox(c, t0.Add(time.Hour), 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_1", "ev_2", "ev_3"}, entryIDs(due))
	assert.Zero(t, due[2].Attempts, "a retried entry starts afresh")

	for _, id := range []string{"ev_1", "ev_2", "ev_3"} {
		require.NoError(t, s.OutboxDone(c, id))
	}
	all, err = s.OutboxList(c, "", 10)
	require.NoError(t, err)
	assert.Empty(t, all)
}

// testDeliveredConcurrently: deliveries recorded by concurrent requests
// (grouped into shared transactions) each remove their entry and set their
// payment's fee, and no other.
func testDeliveredConcurrently(t *testing.T, s Store) {
	c := ctx(t)
	const n = 40
	for i := 0; i < n; i++ {
		p := mustInsert(t, s, payment(fmt.Sprintf("pay_%d", i), "mer_1", t0))
		require.NoError(t, s.AddOutbox(c, "ev_"+p.ID, p.ID, `{}`, t0))
	}
	require.NoError(t, s.AddOutbox(c, "ev_kept", "pay_0", `{}`, t0.Add(time.Second)))
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("pay_%d", i)
			if i%2 == 0 {
				errs[i] = s.OutboxDoneFee(c, "ev_"+id, id, int64(100+i))
			} else {
				errs[i] = s.OutboxDone(c, "ev_"+id)
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "delivery %d", i)
	}
	left, err := s.OutboxList(c, "", 100)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_kept"}, entryIDs(left))
	for i := 0; i < n; i++ {
		got, err := s.Get(c, "mer_1", fmt.Sprintf("pay_%d", i))
		require.NoError(t, err)
		want := int64(0)
		if i%2 == 0 {
			want = int64(100 + i)
		}
		assert.Equal(t, want, got.Fee, "fee of pay_%d", i)
		assert.EqualValues(t, 1, got.Version, "a delivery does not bump the version")
	}
}

// testDeliveredAfterClose: a closed store refuses to record a delivery
// (the entry stays for a redelivery) instead of losing it silently.
func testDeliveredAfterClose(t *testing.T, s Store) {
	c := ctx(t)
	require.NoError(t, s.OutboxDone(c, "ev_none"), "an unknown entry is already gone")
	require.NoError(t, s.Close())
	assert.Error(t, s.OutboxDone(c, "ev_none"))
	assert.Error(t, s.OutboxDoneFee(c, "ev_none", "pay_none", 1))
}

// testOutboxOrder: the events of one commit get increasing times, and
// OlderOutbox names the oldest undelivered event (pending or dead) of the
// same payment queued before an entry.
func testOutboxOrder(t *testing.T, s Store) {
	c := ctx(t)
	p := mustInsert(t, s, payment("pay_1", "mer_1", t0))
	// Ids in reverse order of time: order is by time, not id.
	p.UpdatedAt = t0.Add(time.Second)
	queued := []service.OutboxEntry{entry("ev_z_capture", p.ID), entry("ev_y_refund", p.ID)}
	require.NoError(t, s.Commit(c, p, queued, t0))
	assert.True(t, queued[0].First, "the payment's first event knows it")
	assert.False(t, queued[1].First, "the second event waits behind the first")
	require.NoError(t, s.AddOutbox(c, "ev_x_refund2", p.ID, `{}`, t0.Add(time.Second)))
	require.NoError(t, s.AddOutbox(c, "ev_other", "pay_2", `{}`, t0.Add(-time.Hour)))

	all, err := s.OutboxList(c, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_other", "ev_z_capture", "ev_y_refund", "ev_x_refund2"}, entryIDs(all))

	older, err := s.OlderOutbox(c, p.ID, "ev_z_capture")
	require.NoError(t, err)
	assert.Nil(t, older, "the first event of its payment")
	for _, id := range []string{"ev_y_refund", "ev_x_refund2"} {
		older, err = s.OlderOutbox(c, p.ID, id)
		require.NoError(t, err)
		require.NotNil(t, older, id)
		assert.Equal(t, "ev_z_capture", older.ID, id)
	}
	require.NoError(t, s.OutboxDeadLetter(c, "ev_z_capture", "failed_precondition"))
	older, err = s.OlderOutbox(c, p.ID, "ev_x_refund2")
	require.NoError(t, err)
	require.NotNil(t, older)
	assert.Equal(t, "ev_z_capture", older.ID, "a dead older event still comes first")
	require.NoError(t, s.OutboxDoneFee(c, "ev_z_capture", p.ID, 73))
	got, err := s.Get(c, p.MerchantID, p.ID)
	require.NoError(t, err)
	assert.EqualValues(t, 73, got.Fee, "OutboxDoneFee records the fee")
	assert.Equal(t, p.Version, got.Version, "the fee does not bump the version")
	older, err = s.OlderOutbox(c, p.ID, "ev_x_refund2")
	require.NoError(t, err)
	require.NotNil(t, older)
	assert.Equal(t, "ev_y_refund", older.ID)
	older, err = s.OlderOutbox(c, p.ID, "ev_none")
	require.NoError(t, err)
	assert.Nil(t, older, "an unknown entry")
}

func testCommit(t *testing.T, s Store) {
	c := ctx(t)
	p := mustInsert(t, s, payment("pay_1", "mer_1", t0))
	stale := *p
	p.Status = service.StatusRefunded
	p.AmountRefunded = 1000
	require.NoError(t, s.Commit(c, p, []service.OutboxEntry{entry("ev_1", p.ID)}, t0))
	assert.EqualValues(t, 2, p.Version)
	stale.Status = service.StatusCanceled
	assert.ErrorIs(t, s.Commit(c, &stale, []service.OutboxEntry{entry("ev_2", p.ID)}, t0), service.ErrConcurrentUpdate)
	all, err := s.OutboxList(c, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_1"}, entryIDs(all), "a refused commit queues nothing")
	got, err := s.Get(c, "mer_1", "pay_1")
	require.NoError(t, err)
	assert.Equal(t, service.StatusRefunded, got.Status)
}

// testFeeWrites: a payment write carrying a fee (a capture the ledger
// took before its outcome's commit) stores it; one carrying none keeps
// the fee stored since the payment was read (the sweeper's OutboxDoneFee
// does not move the version, so the version check lets that write in).
func testFeeWrites(t *testing.T, s Store) {
	writes := []struct {
		name  string
		write func(c context.Context, p *service.Payment) error
	}{
		{"update", func(c context.Context, p *service.Payment) error { return s.Update(c, p) }},
		{"commit", func(c context.Context, p *service.Payment) error {
			return s.Commit(c, p, []service.OutboxEntry{entry("ev_"+p.ID, p.ID)}, t0)
		}},
		{"finish operation", func(c context.Context, p *service.Payment) error {
			op := &service.Operation{ID: "cap_" + p.ID, PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpCapture, Amount: 1000,
				State: service.OpProcessing, CreatedAt: t0, UpdatedAt: t0}
			if err := s.StartOperation(c, p, op); err != nil {
				return err
			}
			op.State, p.PendingOp = service.OpSucceeded, ""
			return s.FinishOperation(c, p, op, nil, t0)
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			c := ctx(t)
			id := "pay_" + strings.ReplaceAll(w.name, " ", "_")
			p := mustInsert(t, s, payment(id, "mer_1", t0))
			require.NoError(t, s.SetFee(c, id, 73), "the sweeper stores a delivered capture's fee")
			p.Status = service.StatusCaptured
			require.NoError(t, w.write(c, p), "the version check passes: the fee did not move it")
			got, err := s.Get(c, "mer_1", id)
			require.NoError(t, err)
			assert.EqualValues(t, 73, got.Fee, "a write read before the fee was stored keeps it")
			assert.Equal(t, service.StatusCaptured, got.Status)

			known := mustInsert(t, s, payment(id+"_known", "mer_1", t0))
			// Past int32: the fee is a bigint in every statement.
			known.Status, known.Fee = service.StatusCaptured, 2_900_000_059
			require.NoError(t, w.write(c, known))
			got, err = s.Get(c, "mer_1", known.ID)
			require.NoError(t, err)
			assert.EqualValues(t, 2_900_000_059, got.Fee, "a write that learned the fee stores it")
		})
	}
}

func testReconcileReads(t *testing.T, s Store) {
	c := ctx(t)
	for _, id := range []string{"pay_c", "pay_a", "pay_b"} {
		mustInsert(t, s, payment(id, "mer_"+id, t0))
		require.NoError(t, s.AddOutbox(c, "ev_"+id, id, `{}`, t0))
	}
	ps, err := s.PaymentsAfter(c, "", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"pay_a", "pay_b"}, paymentIDs(ps), "every merchant's, in id order")
	ps, err = s.PaymentsAfter(c, "pay_b", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"pay_c"}, paymentIDs(ps))
	require.NoError(t, s.OutboxDeadLetter(c, "ev_pay_a", "failed_precondition"))
	es, err := s.OutboxAfter(c, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_pay_a", "ev_pay_b", "ev_pay_c"}, entryIDs(es), "pending and dead")
	es, err = s.OutboxAfter(c, "ev_pay_b", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_pay_c"}, entryIDs(es))
}

// testMerchantEvents: merchant events (OutboxEntry.Merchant) go to their
// own outbox with the commit that writes them (none with a refused
// commit, none in the ledger outbox), and the relay's reads and marks.
func testMerchantEvents(t *testing.T, s Store) {
	c := ctx(t)
	p := mustInsert(t, s, payment("pay_1", "mer_1", t0))
	ev := func(id string) service.OutboxEntry {
		return service.OutboxEntry{Merchant: &service.MerchantEvent{ID: id, Type: "payment.captured", MerchantID: "mer_1", ObjectType: "payment",
			ObjectID: "pay_1", ObjectVersion: 2, Data: []byte(`{"id":"pay_1"}`), CreatedAt: t0}}
	}
	stale := *p
	p.Status = service.StatusCaptured
	require.NoError(t, s.Commit(c, p, []service.OutboxEntry{entry("ev_ledger", p.ID), ev("evt_1"), ev("evt_1")}, t0))
	stale.Status = service.StatusCanceled
	require.ErrorIs(t, s.Commit(c, &stale, []service.OutboxEntry{ev("evt_2")}, t0), service.ErrConcurrentUpdate)
	declined := payment("pay_2", "mer_1", t0)
	declined.Status = service.StatusDeclined
	require.NoError(t, s.InsertCommit(c, declined, []service.OutboxEntry{ev("evt_3")}, t0.Add(time.Millisecond)))
	got, err := s.Get(c, "mer_1", "pay_2")
	require.NoError(t, err)
	assert.Equal(t, service.StatusDeclined, got.Status)
	ledger, err := s.OutboxList(c, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []string{"ev_ledger"}, entryIDs(ledger), "merchant events are not ledger events")
	all, err := s.Events(c, "", 10)
	require.NoError(t, err)
	require.Len(t, all, 2, "one per id, none from the refused commit")
	assert.Equal(t, "evt_1", all[0].ID)
	assert.Equal(t, "payment.captured", all[0].Type)
	assert.JSONEq(t, `{"id":"pay_1"}`, string(all[0].Data))
	assert.Equal(t, "pending", all[0].State)
	due, err := s.EventsDue(c, t0.Add(time.Second), 10)
	require.NoError(t, err)
	require.Len(t, due, 2)
	require.NoError(t, s.EventsDelivered(c, []string{"evt_1"}))
	require.NoError(t, s.EventFailed(c, "evt_3", t0.Add(time.Hour), "unavailable", false))
	due, err = s.EventsDue(c, t0.Add(time.Minute), 10)
	require.NoError(t, err)
	assert.Empty(t, due, "one delivered, one backing off")
	due, err = s.EventsDue(c, t0.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	assert.Equal(t, 1, due[0].Attempts)
	require.NoError(t, s.EventFailed(c, "evt_3", t0, "refused", true))
	dead, err := s.Events(c, "dead", 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "refused", dead[0].LastError)
}

// testStartOperationFor: the payment is read, planned on and marked in
// flight in one write; a refusal (no payment, the plan's error, a payment
// that changed) stores nothing.
func testStartOperationFor(t *testing.T, s Store) {
	c := ctx(t)
	mustInsert(t, s, payment("pay_1", "mer_1", t0))
	plan := func(id string) func(p *service.Payment) (*service.Operation, error) {
		return func(p *service.Payment) (*service.Operation, error) {
			if p.PendingOp != "" {
				return nil, errBusy
			}
			return &service.Operation{ID: id, PaymentID: p.ID, MerchantID: p.MerchantID, Kind: service.OpRefund, Amount: 100, RequestHash: "h",
				State: service.OpProcessing, CreatedAt: t0, UpdatedAt: t0}, nil
		}
	}
	_, _, err := s.StartOperationFor(c, "mer_2", "pay_1", plan("re_x"))
	assert.ErrorIs(t, err, service.ErrNotFound, "another merchant's payment")
	_, _, err = s.StartOperationFor(c, "mer_1", "pay_none", plan("re_x"))
	assert.ErrorIs(t, err, service.ErrNotFound, "no such payment")

	p, op, err := s.StartOperationFor(c, "mer_1", "pay_1", plan("re_a"))
	require.NoError(t, err)
	assert.Equal(t, "re_a", op.ID)
	assert.Equal(t, "re_a", p.PendingOp)
	assert.EqualValues(t, 2, p.Version)
	got, err := s.Get(c, "mer_1", "pay_1")
	require.NoError(t, err)
	assert.Equal(t, p, got, "the payment as stored")
	stored, err := s.Operation(c, "re_a")
	require.NoError(t, err)
	assert.Equal(t, op, stored)

	_, _, err = s.StartOperationFor(c, "mer_1", "pay_1", plan("re_b"))
	assert.ErrorIs(t, err, errBusy, "the plan's refusal, as it returned it")
	_, err = s.Operation(c, "re_b")
	assert.ErrorIs(t, err, service.ErrNoOperation, "nothing of the refused operation is stored")
}

var errBusy = errors.New("an operation is in flight")
