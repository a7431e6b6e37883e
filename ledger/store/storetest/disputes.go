package storetest

import (
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/obolpay/obol/ledger/store"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func dispute(id, merchant, payment string, at time.Time) store.Dispute {
	return store.Dispute{ID: id, PaymentID: payment, MerchantID: merchant, Acquirer: "simulator", AcquirerReference: "ref_" + payment,
		Amount: 2000, Fee: 1500, Currency: "USD", Reason: "fraudulent", Status: store.DisputeNeedsResponse, CreatedAt: at}
}

func event(id string, d store.Dispute) store.Event {
	return store.Event{ID: id, Type: "dispute.created", MerchantID: d.MerchantID, ObjectType: "dispute", ObjectID: d.ID,
		ObjectVersion: d.Version, Data: []byte(`{"id":"` + d.ID + `"}`), CreatedAt: d.CreatedAt}
}

func testDisputes(t *testing.T, s store.Store) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	d1, created, err := s.CreateDispute(ctx, dispute("dp_1", "mer_a", "p1", at), event("evt_1", dispute("dp_1", "mer_a", "p1", at)))
	require.NoError(t, err)
	require.True(t, created, "first create")
	assert.EqualValues(t, 1, d1.Version)
	assert.Equal(t, at, d1.CreatedAt)
	assert.Equal(t, at, d1.UpdatedAt)
	assert.Equal(t, store.DisputeNeedsResponse, d1.Status)

	// The same id again is a replay: the stored dispute, nothing written.
	other := dispute("dp_1", "mer_a", "p1", at.Add(time.Hour))
	other.Amount = 1
	again, created, err := s.CreateDispute(ctx, other)
	require.NoError(t, err)
	assert.False(t, created, "replayed create")
	assert.Equal(t, d1, again, "replayed create answers the stored dispute")

	_, _, err = s.CreateDispute(ctx, dispute("dp_2", "mer_a", "p2", at.Add(time.Minute)))
	require.NoError(t, err)
	_, _, err = s.CreateDispute(ctx, dispute("dp_3", "mer_b", "p3", at.Add(2*time.Minute)))
	require.NoError(t, err)

	// Compare-and-set on the version.
	up := d1
	up.Status, up.Version, up.UpdatedAt = store.DisputeUnderReview, 2, at.Add(24*time.Hour)
	got, err := s.UpdateDispute(ctx, up)
	require.NoError(t, err)
	assert.Equal(t, store.DisputeUnderReview, got.Status)
	assert.EqualValues(t, 2, got.Version)
	assert.Equal(t, at.Add(24*time.Hour), got.UpdatedAt)
	assert.Equal(t, at, got.CreatedAt, "created_at kept")
	stale := d1
	stale.Status, stale.Version = store.DisputeLost, 2
	_, err = s.UpdateDispute(ctx, stale)
	require.ErrorIs(t, err, store.ErrDisputeVersion, "update from a stale version")
	missing := dispute("dp_nope", "mer_a", "p9", at)
	missing.Version = 2
	_, err = s.UpdateDispute(ctx, missing)
	require.ErrorIs(t, err, store.ErrNoDispute)
	_, err = s.Dispute(ctx, "dp_nope")
	require.ErrorIs(t, err, store.ErrNoDispute)

	bad := []struct {
		name string
		d    store.Dispute
	}{
		{"no payment", func() store.Dispute { d := dispute("dp_x", "mer_a", "", at); return d }()},
		{"zero amount", func() store.Dispute { d := dispute("dp_x", "mer_a", "p", at); d.Amount = 0; return d }()},
		{"unknown status", func() store.Dispute { d := dispute("dp_x", "mer_a", "p", at); d.Status = "open"; return d }()},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.CreateDispute(ctx, tt.d)
			require.Error(t, err)
		})
	}

	ids := func(ds []store.Dispute) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	lists := []struct {
		name string
		f    store.DisputeFilter
		want []string
	}{
		{"all, newest first", store.DisputeFilter{}, []string{"dp_3", "dp_2", "dp_1"}},
		{"one merchant", store.DisputeFilter{MerchantID: "mer_a"}, []string{"dp_2", "dp_1"}},
		{"one payment", store.DisputeFilter{PaymentID: "p1"}, []string{"dp_1"}},
		{"page 1", store.DisputeFilter{MerchantID: "mer_a", Limit: 1}, []string{"dp_2"}},
		{"page 2", store.DisputeFilter{MerchantID: "mer_a", Limit: 1, After: "dp_2"}, []string{"dp_1"}},
		{"past the end", store.DisputeFilter{MerchantID: "mer_a", After: "dp_1"}, nil},
		{"other merchant's payment", store.DisputeFilter{MerchantID: "mer_b", PaymentID: "p1"}, nil},
	}
	for _, tt := range lists {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListDisputes(ctx, tt.f)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ids(got))
		})
	}
}

func outboxIDs(t *testing.T, s store.Store) []string {
	t.Helper()
	es, err := s.OutboxEvents(ctx, 0, 1000)
	require.NoError(t, err)
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

// testOutbox: events are written with their state change and only then
// (a replay adds nothing); the relay's reads and marks.
func testOutbox(t *testing.T, s store.Store) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	d := dispute("dp_1", "mer_a", "p1", at)
	_, _, err := s.CreateDispute(ctx, d, event("evt_1", d))
	require.NoError(t, err)
	_, _, err = s.CreateDispute(ctx, d, event("evt_1b", d))
	require.NoError(t, err)
	assert.Equal(t, []string{"evt_1"}, outboxIDs(t, s), "a replayed create writes no event")
	up := d
	up.Status, up.Version = store.DisputeLost, 2
	_, err = s.UpdateDispute(ctx, up, event("evt_2", up))
	require.NoError(t, err)
	_, err = s.UpdateDispute(ctx, up, event("evt_2b", up))
	require.ErrorIs(t, err, store.ErrDisputeVersion)
	assert.Equal(t, []string{"evt_1", "evt_2"}, outboxIDs(t, s), "a refused update writes no event")

	mustAccount(t, s, "bank", "USD", 0)
	mustAccount(t, s, "m", "USD", 0)
	payout := event("evt_3", d)
	payout.Type, payout.ObjectType, payout.ObjectID = "payout.paid", "payout", "po_1"
	_, err = s.PostWithEvents(ctx, Transfer("t1", "bank", "m", 10), payout, event("evt_4", d))
	require.NoError(t, err)
	r, err := s.PostWithEvents(ctx, Transfer("t1", "bank", "m", 10), event("evt_5", d))
	require.NoError(t, err)
	require.True(t, r.Replayed)
	_, err = s.PostWithEvents(ctx, Transfer("t2", "bank", "m", 10_000_000_000_000_000), event("evt_6", d))
	require.NoError(t, err, "no overflow at this size")
	_, err = s.PostWithEvents(ctx, journal.Transaction{ID: "t3", Postings: []journal.Posting{{AccountID: "bank", Amount: 5, Currency: "USD"}}}, event("evt_7", d))
	require.Error(t, err, "an invalid transaction")
	assert.Equal(t, []string{"evt_1", "evt_2", "evt_3", "evt_4", "evt_6"}, outboxIDs(t, s), "events of posted transactions only, in order")
	es, err := s.OutboxEvents(ctx, 0, 10)
	require.NoError(t, err)
	assert.Equal(t, "payout.paid", es[2].Type)
	assert.Equal(t, "po_1", es[2].ObjectID)
	assert.JSONEq(t, `{"id":"dp_1"}`, string(es[2].Data))
	assert.Equal(t, store.OutboxPending, es[2].Status)

	now := at.Add(time.Hour)
	due, err := s.DueEvents(ctx, now, 2)
	require.NoError(t, err)
	require.Len(t, due, 2)
	assert.Equal(t, "evt_1", due[0].ID)
	require.NoError(t, s.MarkDelivered(ctx, []string{"evt_1", "evt_2"}))
	require.NoError(t, s.MarkFailed(ctx, "evt_3", now.Add(time.Minute), "eventsd unavailable", false))
	require.NoError(t, s.MarkFailed(ctx, "evt_4", now, "refused: invalid", true))
	due, err = s.DueEvents(ctx, now, 10)
	require.NoError(t, err)
	require.Len(t, due, 1, "evt_3 waits for its next attempt; evt_4 is dead")
	assert.Equal(t, "evt_6", due[0].ID)
	due, err = s.DueEvents(ctx, now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, due, 2)
	assert.Equal(t, "evt_3", due[0].ID)
	assert.Equal(t, 1, due[0].Attempts)
	assert.Equal(t, "eventsd unavailable", due[0].LastError)
	require.NoError(t, s.MarkFailed(ctx, "evt_1", now, "late", true), "a delivered entry stays delivered")
	c, err := s.CountOutbox(ctx)
	require.NoError(t, err)
	assert.Equal(t, store.OutboxCounts{Pending: 2, Delivered: 2, Dead: 1}, c)
	after, err := s.OutboxEvents(ctx, es[3].Seq, 10)
	require.NoError(t, err)
	require.Len(t, after, 1)
	assert.Equal(t, "evt_6", after[0].ID)
}
