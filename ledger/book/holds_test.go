package book_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/ledger/book"
	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	"github.com/obolpay/obol/ledger/store/sqlite"
)

// readCounter counts the transactions read back from the store.
type readCounter struct {
	store.Store
	reads int
}

func (r *readCounter) Transaction(ctx context.Context, id string) (journal.Transaction, error) {
	r.reads++
	return r.Store.Transaction(ctx, id)
}

// TestCaptureUsesTheHoldItPosted: a capture of a hold this book posted
// does not read the hold back (one database transaction less per
// payment); another book (a second ledgerd replica) reads it; and the
// checks on the hold are the same either way.
func TestCaptureUsesTheHoldItPosted(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	st := &readCounter{Store: s}
	b := book.New(st, nil)
	pay := func(id, merchant string) book.Payment {
		return book.Payment{PaymentID: id, MerchantID: merchant, Currency: "USD", Amount: 2500, Acquirer: "sim", AcquirerReference: "ref_" + id}
	}

	tests := []struct {
		name      string
		authorize bool   // by b (else: no hold at all)
		captureBy string // "same" or "other" book
		merchant  string // of the capture
		wantErr   error
		wantReads int
	}{
		{name: "same book, no read", authorize: true, captureBy: "same", merchant: "m1", wantReads: 0},
		{name: "another replica reads the hold", authorize: true, captureBy: "other", merchant: "m1", wantReads: 1},
		{name: "another merchant is refused without a read", authorize: true, captureBy: "same", merchant: "m2", wantErr: book.ErrNotAuthorized, wantReads: 0},
		{name: "no hold: refused after a read", authorize: false, captureBy: "same", merchant: "m1", wantErr: book.ErrNotAuthorized, wantReads: 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "pay_hold_" + string(rune('a'+i))
			if tt.authorize {
				_, err := b.Authorize(ctx, pay(id, "m1"))
				require.NoError(t, err)
			}
			by := b
			if tt.captureBy == "other" {
				by = book.New(st, nil)
			}
			st.reads = 0
			_, _, err := by.Capture(ctx, pay(id, tt.merchant))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.wantReads, st.reads)
		})
	}

	// A retried capture replays (it reads the hold again: the capture
	// forgot it).
	st.reads = 0
	r, _, err := b.Capture(ctx, pay("pay_hold_a", "m1"))
	require.NoError(t, err)
	assert.True(t, r.Replayed)
	assert.Equal(t, 1, st.reads)
	// A capture of a canceled hold the cache still knows is refused as
	// with a read.
	_, err = b.Authorize(ctx, pay("pay_hold_x", "m1"))
	require.NoError(t, err)
	_, err = b.Cancel(ctx, pay("pay_hold_x", "m1"))
	require.NoError(t, err)
	_, _, err = b.Capture(ctx, pay("pay_hold_x", "m1"))
	require.ErrorIs(t, err, book.ErrAlreadyCaptured)
}
