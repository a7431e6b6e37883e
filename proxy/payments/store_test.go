package payments

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOperationStore (both backends): an operation is stored processing
// with the payment marked in flight, one at a time; finishing it is a
// compare-and-set (a second resumer loses) that writes the payment and
// queues its ledger event in one transaction; a touch claims a stale
// operation for one resumer only.
func TestOperationStore(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			p := &Payment{ID: "pay_1", MerchantID: "mer_1", Status: StatusCaptured, Amount: 1000, AmountCaptured: 1000, Currency: "USD", Token: "tok_1", Acquirer: "simulator", CreatedAt: now, UpdatedAt: now, Version: 1}
			require.NoError(t, st.Insert(ctx, p))
			op := &Operation{ID: "re_a", PaymentID: p.ID, MerchantID: p.MerchantID, Kind: OpRefund, Amount: 300, State: OpProcessing, CreatedAt: now, UpdatedAt: now}
			require.NoError(t, st.StartOperation(ctx, p, op))
			assert.Equal(t, "re_a", p.PendingOp)

			stale, err := st.Get(ctx, p.MerchantID, p.ID)
			require.NoError(t, err)
			other := &Operation{ID: "re_b", PaymentID: p.ID, MerchantID: p.MerchantID, Kind: OpRefund, Amount: 100, State: OpProcessing, CreatedAt: now, UpdatedAt: now}
			assert.ErrorIs(t, st.StartOperation(ctx, stale, other), ErrConcurrentUpdate, "a second operation while one is in flight")
			_, err = st.Operation(ctx, "re_b")
			assert.ErrorIs(t, err, ErrNoOperation, "nothing of the refused operation is stored")

			ops, err := st.StaleOperations(ctx, now.Add(time.Second), 10)
			require.NoError(t, err)
			require.Len(t, ops, 1)
			a, b := *ops[0], *ops[0]
			require.NoError(t, st.TouchOperation(ctx, &a, now.Add(time.Minute)))
			assert.ErrorIs(t, st.TouchOperation(ctx, &b, now.Add(time.Minute)), ErrConcurrentUpdate, "two resumers claim one operation")

			cur, err := st.Get(ctx, p.MerchantID, p.ID)
			require.NoError(t, err)
			finish := func(p *Payment) error {
				o := a
				o.State = OpSucceeded
				p.PendingOp, p.AmountRefunded, p.Status = "", 300, StatusPartiallyRefunded
				p.Refunds = append(p.Refunds, Refund{ID: o.ID, Amount: 300, CreatedAt: now})
				e := event(0, p, 300, o.ID)
				return st.FinishOperation(ctx, p, &o, []OutboxEntry{e}, now)
			}
			second := *cur
			require.NoError(t, finish(cur))
			assert.ErrorIs(t, finish(&second), ErrConcurrentUpdate, "the operation is finished once")
			done, err := st.Operation(ctx, "re_a")
			require.NoError(t, err)
			assert.Equal(t, OpSucceeded, done.State)
			got, err := st.Get(ctx, p.MerchantID, p.ID)
			require.NoError(t, err)
			assert.Equal(t, "", got.PendingOp)
			assert.EqualValues(t, 300, got.AmountRefunded)
			require.Len(t, got.Refunds, 1)
			queued, err := st.OutboxList(ctx, "", 10)
			require.NoError(t, err)
			assert.Len(t, queued, 1, "the ledger event is queued once")
		})
	}
}
