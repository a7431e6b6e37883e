package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/events/store"
	"github.com/obolpay/obol/ledger/events/store/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func event(id, merchant, typ string, at time.Time) store.Event {
	return store.Event{ID: id, MerchantID: merchant, Type: typ, CreatedAt: at, ObjectType: "payment", ObjectID: "pay_" + id, ObjectVersion: 1,
		Data: json.RawMessage(`{"id":"pay_` + id + `","amount":1000}`)}
}

func endpoint(t *testing.T, s *store.Store, merchant string, types ...string) store.Endpoint {
	t.Helper()
	e, err := s.CreateEndpoint(context.Background(), store.Endpoint{ID: store.NewID("we_"), MerchantID: merchant, URL: "https://example.com/hook",
		Types: types, Status: store.StatusEnabled, Secret: "sealed", CreatedAt: t0})
	require.NoError(t, err)
	return e
}

func TestConformance(t *testing.T) {
	for name, open := range storetest.Backends() {
		t.Run(name, func(t *testing.T) {
			t.Run("publish is idempotent by id and fans out once", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				all := endpoint(t, s, "m1", "*")
				caps := endpoint(t, s, "m1", "payment.captured")
				endpoint(t, s, "m2", "*")
				batch := []store.Event{event("evt_1", "m1", "payment.authorized", t0), event("evt_2", "m1", "payment.captured", t0)}
				n, dup, err := s.Publish(ctx, batch, "", t0)
				require.NoError(t, err)
				assert.Equal(t, [2]int{2, 0}, [2]int{n, dup})
				n, dup, err = s.Publish(ctx, batch, "", t0.Add(time.Minute))
				require.NoError(t, err)
				assert.Equal(t, [2]int{0, 2}, [2]int{n, dup})
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Equal(t, 3, counts[store.DeliveryPending], "evt_1 to the * endpoint, evt_2 to both")
				leased, err := s.Lease(ctx, "w", t0, t0.Add(time.Minute), 10)
				require.NoError(t, err)
				got := map[string][]string{}
				for _, l := range leased {
					got[l.Endpoint.ID] = append(got[l.Endpoint.ID], l.Event.ID)
				}
				assert.ElementsMatch(t, []string{"evt_1", "evt_2"}, got[all.ID])
				assert.Equal(t, []string{"evt_2"}, got[caps.ID])
			})
			t.Run("same id with other content is refused", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				other := event("evt_1", "m1", "payment.captured", t0)
				_, _, err = s.Publish(ctx, []store.Event{event("evt_3", "m1", "payment.authorized", t0), other}, "", t0)
				require.ErrorIs(t, err, store.ErrEventConflict)
				_, err = s.Event(ctx, "m1", "evt_3")
				require.ErrorIs(t, err, store.ErrNotFound, "the batch is atomic")
			})
			t.Run("concurrent publishes of one id store it once", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				endpoint(t, s, "m1", "*")
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for i := range errs {
					wg.Go(func() {
						for {
							_, _, errs[i] = s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
							if errs[i] == nil || !isBusy(errs[i]) {
								return
							}
						}
					})
				}
				wg.Wait()
				for _, err := range errs {
					require.NoError(t, err)
				}
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Equal(t, 1, counts[store.DeliveryPending])
			})
			t.Run("list filters and pages newest first", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				var batch []store.Event
				for i := range 7 {
					typ := "payment.authorized"
					if i%2 == 1 {
						typ = "refund.created"
					}
					batch = append(batch, event(fmt.Sprintf("evt_%d", i), "m1", typ, t0.Add(time.Duration(i/2)*time.Second)))
				}
				batch = append(batch, event("evt_other", "m2", "payment.authorized", t0))
				_, _, err := s.Publish(ctx, batch, "", t0)
				require.NoError(t, err)
				var ids []string
				var cur *store.Cursor
				for {
					page, err := s.Events(ctx, "m1", store.EventFilter{After: cur, Limit: 3})
					require.NoError(t, err)
					for _, e := range page {
						ids = append(ids, e.ID)
					}
					if len(page) < 3 {
						break
					}
					last := page[len(page)-1]
					cur = &store.Cursor{At: last.CreatedAt, ID: last.ID}
				}
				assert.Equal(t, []string{"evt_6", "evt_5", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"}, ids)
				refunds, err := s.Events(ctx, "m1", store.EventFilter{Types: []string{"refund.created"}, Limit: 10})
				require.NoError(t, err)
				assert.Len(t, refunds, 3)
				window, err := s.Events(ctx, "m1", store.EventFilter{CreatedAfter: t0.Add(time.Second), CreatedBefore: t0.Add(3 * time.Second), Limit: 10})
				require.NoError(t, err)
				assert.Len(t, window, 4)
				byObject, err := s.Events(ctx, "m1", store.EventFilter{ObjectID: "pay_evt_2", Limit: 10})
				require.NoError(t, err)
				require.Len(t, byObject, 1)
				assert.JSONEq(t, `{"id":"pay_evt_2","amount":1000}`, string(byObject[0].Data))
				_, err = s.Event(ctx, "m1", "evt_other")
				assert.ErrorIs(t, err, store.ErrNotFound, "another merchant's event")
			})
			t.Run("a lease excludes other workers until it runs out", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				a, err := s.Lease(ctx, "a", t0, t0.Add(30*time.Second), 10)
				require.NoError(t, err)
				require.Len(t, a, 1)
				b, err := s.Lease(ctx, "b", t0.Add(10*time.Second), t0.Add(40*time.Second), 10)
				require.NoError(t, err)
				assert.Empty(t, b)
				b, err = s.Lease(ctx, "b", t0.Add(31*time.Second), t0.Add(60*time.Second), 10)
				require.NoError(t, err)
				require.Len(t, b, 1, "a's lease ran out: b takes over")
				att := store.Attempt{ID: store.NewID("att_"), DeliveryID: a[0].Delivery.ID, EventID: "evt_1", EndpointID: ep.ID, Attempt: 1, StartedAt: t0, ResponseStatus: 200, Succeeded: true}
				held, err := s.Finish(ctx, "a", att, store.Outcome{Status: store.DeliverySucceeded}, t0.Add(32*time.Second))
				require.NoError(t, err)
				assert.False(t, held, "a lost the lease")
				att.ID = store.NewID("att_")
				held, err = s.Finish(ctx, "b", att, store.Outcome{Status: store.DeliverySucceeded}, t0.Add(33*time.Second))
				require.NoError(t, err)
				assert.True(t, held)
				d, err := s.Delivery(ctx, a[0].Delivery.ID)
				require.NoError(t, err)
				assert.Equal(t, store.DeliverySucceeded, d.Status)
				assert.Equal(t, 1, d.Attempts)
				atts, err := s.Attempts(ctx, "m1", ep.ID, store.AttemptFilter{Limit: 10})
				require.NoError(t, err)
				assert.Len(t, atts, 2, "both attempts are recorded")
				ok, err := s.SucceededSince(ctx, ep.ID, t0)
				require.NoError(t, err)
				assert.True(t, ok)
			})
			t.Run("retry is due at its time; disabled endpoints are not leased", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				watcher := endpoint(t, s, "m1", "webhook_endpoint.disabled")
				_, _, err := s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				l, err := s.Lease(ctx, "a", t0, t0.Add(time.Minute), 10)
				require.NoError(t, err)
				require.Len(t, l, 1)
				held, err := s.Finish(ctx, "a", store.Attempt{ID: store.NewID("att_"), DeliveryID: l[0].Delivery.ID, EventID: "evt_1", EndpointID: ep.ID, Attempt: 1, StartedAt: t0, Error: "HTTP 500"},
					store.Outcome{Status: store.DeliveryPending, NextAttemptAt: t0.Add(time.Hour)}, t0)
				require.NoError(t, err)
				require.True(t, held)
				l, err = s.Lease(ctx, "a", t0.Add(59*time.Minute), t0.Add(61*time.Minute), 10)
				require.NoError(t, err)
				assert.Empty(t, l)
				disabledEvent := func(e store.Endpoint) store.Event {
					return store.Event{ID: "evt_disabled_" + e.ID, MerchantID: e.MerchantID, Type: "webhook_endpoint.disabled", CreatedAt: t0, ObjectType: "webhook_endpoint", ObjectID: e.ID, ObjectVersion: e.Version, Data: json.RawMessage(`{}`)}
				}
				done, err := s.DisableEndpoint(ctx, ep.ID, "failing", disabledEvent, t0)
				require.NoError(t, err)
				assert.True(t, done)
				done, err = s.DisableEndpoint(ctx, ep.ID, "failing", disabledEvent, t0)
				require.NoError(t, err)
				assert.False(t, done, "already disabled")
				l, err = s.Lease(ctx, "a", t0.Add(2*time.Hour), t0.Add(3*time.Hour), 10)
				require.NoError(t, err)
				require.Len(t, l, 1, "only the watcher's delivery of the disabled event")
				assert.Equal(t, watcher.ID, l[0].Endpoint.ID)
				assert.Equal(t, "webhook_endpoint.disabled", l[0].Event.Type)
				got, err := s.Endpoint(ctx, "m1", ep.ID)
				require.NoError(t, err)
				assert.Equal(t, store.StatusDisabled, got.Status)
				assert.Equal(t, "failing", got.DisabledReason)
			})
			t.Run("endpoint update is versioned; delete cascades; redeliver", func(t *testing.T) {
				s := open(t)
				ctx := context.Background()
				ep := endpoint(t, s, "m1", "*")
				upd := ep
				upd.URL = "https://example.org/new"
				upd, err := s.UpdateEndpoint(ctx, upd, t0.Add(time.Second))
				require.NoError(t, err)
				assert.Equal(t, int64(2), upd.Version)
				_, err = s.UpdateEndpoint(ctx, ep, t0.Add(2*time.Second))
				require.ErrorIs(t, err, store.ErrConcurrentUpdate)
				_, _, err = s.Publish(ctx, []store.Event{event("evt_1", "m1", "payment.authorized", t0)}, "", t0)
				require.NoError(t, err)
				d, err := s.Redeliver(ctx, "m1", "evt_1", ep.ID, t0)
				require.NoError(t, err)
				assert.Equal(t, "evt_1", d.EventID)
				_, err = s.Redeliver(ctx, "m2", "evt_1", ep.ID, t0)
				require.ErrorIs(t, err, store.ErrNotFound)
				list, err := s.Endpoints(ctx, "m1", "", 10)
				require.NoError(t, err)
				require.Len(t, list, 1)
				assert.Equal(t, "https://example.org/new", list[0].URL)
				require.ErrorIs(t, s.DeleteEndpoint(ctx, "m2", ep.ID), store.ErrNotFound)
				leased, err := s.Lease(ctx, "w", t0, t0.Add(time.Minute), 10)
				require.NoError(t, err)
				require.NotEmpty(t, leased)
				require.NoError(t, s.DeleteEndpoint(ctx, "m1", ep.ID))
				held, err := s.Finish(ctx, "w", store.Attempt{ID: store.NewID("att_"), DeliveryID: leased[0].Delivery.ID, EventID: "evt_1", EndpointID: ep.ID, Attempt: 1, StartedAt: t0, ResponseStatus: 200, Succeeded: true},
					store.Outcome{Status: store.DeliverySucceeded}, t0)
				require.NoError(t, err, "an attempt of a delivery deleted meanwhile is dropped, not an error")
				assert.False(t, held)
				counts, err := s.DeliveryCounts(ctx)
				require.NoError(t, err)
				assert.Empty(t, counts)
			})
		})
	}
}

func isBusy(err error) bool {
	var e interface{ Code() int }
	return errors.As(err, &e) && e.Code()&0xff == 5 // SQLITE_BUSY
}
