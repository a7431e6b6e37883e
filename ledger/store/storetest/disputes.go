package storetest

import (
	"testing"
	"time"

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
